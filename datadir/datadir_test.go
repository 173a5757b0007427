package datadir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLayout(t *testing.T) {
	l := New(filepath.Join("node", "data"))
	for got, want := range map[string]string{
		l.Catalog():    filepath.Join("node", "data", "catalog.db"),
		l.Chunks():     filepath.Join("node", "data", "chunks"),
		l.Keys():       filepath.Join("node", "data", "keys"),
		l.Identity():   filepath.Join("node", "data", "keys", "backoffice.identity"),
		l.Recipients(): filepath.Join("node", "data", "keys", "recipients.txt"),
		l.NodeKey():    filepath.Join("node", "data", "keys", "node.key"),
		l.NodePub():    filepath.Join("node", "data", "keys", "node.pub"),
		l.Pepper():     filepath.Join("node", "data", "keys", "pepper"),
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	exp, err := l.DefaultExportDir()
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "node", "exports"); exp != want {
		t.Errorf("export dir %s, want %s (beside the data directory)", exp, want)
	}
}

func TestCreate(t *testing.T) {
	l := New(filepath.Join(t.TempDir(), "a", "data"))
	if err := l.Create(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(l.Root())
	if err != nil || fi.Mode().Perm() != DirMode {
		t.Fatalf("data dir %v, %v: want mode %v", fi, err, DirMode)
	}
}
