package evidence

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/format/manifest"
)

// hostileBundle writes a bundle whose manifest chain and checkpoint are
// valid but whose chunk record points outside the bundle.
func hostileBundle(t *testing.T, object string) (string, ed25519.PublicKey) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	rec := manifest.Record{Index: 0, Incident: "inc", Kind: manifest.KindChunk, Track: "original", Seq: 1,
		Object: object, CipherSHA256: strings.Repeat("0", 64), Wall: time.Now().UTC(), Prev: manifest.Genesis}
	line, head, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cp := manifest.Checkpoint{Incident: "inc", Index: 0, Head: head, Time: time.Now().UTC()}
	cp.Sign(priv)
	cpl, _ := json.Marshal(&cp)
	info, _ := json.Marshal(map[string]string{"id": "inc"})
	for name, data := range map[string][]byte{
		BundleManifest: append(line, '\n'), BundleCheckpoints: append(cpl, '\n'), BundleInfo: info, BundleKeys: []byte("{}"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, pub
}

func TestHostileBundlePathsStayInside(t *testing.T) {
	// A file outside the bundle that a traversal would reach.
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("not evidence"), 0o600)
	for _, obj := range []string{"../../../../../../" + outside, outside, "a/../../x", "x\x00y"} {
		dir, pub := hostileBundle(t, obj)
		rep := verifyDir(t, dir, pub)
		if rep.OK() || !strings.Contains(rep.Problems[0].String(), "invalid key") {
			t.Fatalf("object %q: %+v", obj, rep.Problems)
		}
	}
}

func TestNotABundle(t *testing.T) {
	if _, err := OpenBundle(t.TempDir()); err == nil {
		t.Fatal("an empty directory opened as a bundle")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, BundleInfo), []byte("{garbage"), 0o600)
	if _, err := OpenBundle(dir); err == nil {
		t.Fatal("a malformed incident.json opened as a bundle")
	}
}

func TestExportRefusesDataDir(t *testing.T) {
	data := t.TempDir()
	os.MkdirAll(filepath.Join(data, "sub"), 0o700)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(data, link)
	for _, out := range []string{data, filepath.Join(data, "x"), filepath.Join(data, "sub", "y"), filepath.Join(link, "z")} {
		if err := checkOutside(data, out); err == nil {
			t.Errorf("export to %s allowed", out)
		}
	}
	if err := checkOutside(data, t.TempDir()); err != nil {
		t.Errorf("export outside refused: %v", err)
	}
}
