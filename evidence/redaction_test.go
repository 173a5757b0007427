package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/format/redaction"
)

func TestVerifyRedaction(t *testing.T) {
	rep := verifyRecords(t, session("s1", 2))
	if !rep.OK() {
		t.Fatalf("fixture fails: %+v", rep.Problems)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	out := filepath.Join(t.TempDir(), "redacted.mp4")
	media := []byte("a redacted copy")
	os.WriteFile(out, media, 0o600)
	sum := sha256.Sum256(media)
	r := redaction.Report{Version: redaction.Version, Incident: testIncident, Session: "s1", Reference: "SAR-1", Reason: "access request",
		FromNS: 0, ToNS: int64(3 * time.Second), Tracks: []redaction.Track{}, Edits: []redaction.Edit{},
		Output:      redaction.File{Name: "redacted.mp4", Size: int64(len(media)), SHA256: hex.EncodeToString(sum[:])},
		RequestedBy: "alice", ApprovedBy: "bob", Node: "n1"}
	r.Chunks = rep.RedactionChunks("s1")
	if len(r.Chunks) != 3 || r.Chunks[0].Seq != 0 {
		t.Fatalf("chunks of s1: %+v", r.Chunks)
	}
	encode := func(r redaction.Report, k ed25519.PrivateKey) []byte {
		if err := r.Sign(k); err != nil {
			t.Fatal(err)
		}
		b, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := encode(r, key)
	keys := NodeKeys{ByNode: map[string]ed25519.PublicKey{"n1": pub}}
	if _, err := rep.VerifyRedaction(good, keys, out); err != nil {
		t.Fatalf("good report: %v", err)
	}
	if _, err := rep.VerifyRedaction(good, KeysOf(pub), ""); err != nil {
		t.Fatalf("good report, key without its node: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	foreign := r
	foreign.Chunks = append([]redaction.Chunk{{Seq: 9, Object: "elsewhere/9", CipherSHA256: "00", PlainSHA256: "00"}}, r.Chunks...)
	wrongHash := r
	wrongHash.Chunks = append([]redaction.Chunk(nil), r.Chunks...)
	wrongHash.Chunks[1].PlainSHA256 = strings.Repeat("0", 64)
	otherIncident := r
	otherIncident.Incident = "another"
	for name, c := range map[string]struct {
		data []byte
		path string
		want string
	}{
		"changed":        {bytes.Replace(good, []byte(`"approved_by":"bob"`), []byte(`"approved_by":"eve"`), 1), "", "does not verify"},
		"other key":      {encode(r, other), "", "does not verify"},
		"foreign chunk":  {encode(foreign, key), "", "not an original chunk"},
		"wrong hash":     {encode(wrongHash, key), "", "differ"},
		"other incident": {encode(otherIncident, key), "", "about incident"},
		"other file":     {good, filepath.Join(t.TempDir(), "missing.mp4"), "redacted file"},
		"garbage":        {[]byte("{}\n"), "", "version"},
	} {
		if _, err := rep.VerifyRedaction(c.data, keys, c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
	os.WriteFile(out, []byte("another copy!!!"), 0o600)
	if _, err := rep.VerifyRedaction(good, keys, out); err == nil {
		t.Error("a changed redacted file verified")
	}
}
