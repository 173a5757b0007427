package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCatalogFlags: --catalog takes a postgres:// URL without a
// password (one in it is refused as a usage error that does not repeat
// it), --catalog-password-file supplies the password, and the default is
// the data directory's SQLite file.
func TestCatalogFlags(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dsn, pwFile string
		opts        int
		refused     bool
	}{
		{dsn: ""},
		{dsn: "postgres://camvault@db.example/camvault?sslmode=verify-full"},
		{dsn: "postgresql://camvault@db.example/camvault", pwFile: pwFile, opts: 1},
		{dsn: "postgres://camvault:s3cret-pw@db.example/camvault", refused: true},
		{dsn: "postgres://camvault@db.example/camvault?password=s3cret-pw", refused: true},
		{dsn: "/elsewhere/catalog.db", refused: true},
		{dsn: "", pwFile: pwFile, refused: true},
		{dsn: "postgres://camvault@db.example/camvault", pwFile: filepath.Join(t.TempDir(), "missing"), refused: true},
	} {
		f := nodeFlags{dir: "data", dsn: tc.dsn, passwordFile: tc.pwFile}
		dsn, opts, err := f.catalog()
		var ue usageError
		switch {
		case tc.refused && !errors.As(err, &ue):
			t.Errorf("%q, password file %q: %v, want a usage error", tc.dsn, tc.pwFile, err)
		case tc.refused && strings.Contains(err.Error(), "s3cret-pw"):
			t.Errorf("%q: the refusal repeats the password: %v", tc.dsn, err)
		case !tc.refused && (err != nil || dsn != tc.dsn || len(opts) != tc.opts):
			t.Errorf("%q, password file %q: %q, %d options, %v", tc.dsn, tc.pwFile, dsn, len(opts), err)
		}
	}
}
