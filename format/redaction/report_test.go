package redaction

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"
)

// TestSignedMessage pins what the signature covers, as FORMAT.md says:
// the domain line, then the report's canonical line without signature.
func TestSignedMessage(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	at := time.Date(2026, 12, 7, 11, 0, 0, 5, time.FixedZone("CET", 3600))
	r := Report{Version: Version, Incident: "i", Session: "s", Chunks: []Chunk{}, Tracks: []Track{}, Edits: []Edit{},
		RequestedAt: at, ApprovedAt: at, RenderedAt: at}
	if err := r.Sign(key); err != nil {
		t.Fatal(err)
	}
	line, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(line, []byte(`"requested_at":"2026-12-07T10:00:00.000000005Z"`)) {
		t.Errorf("times not in UTC: %s", line)
	}
	msg, _ := r.SignedBytes()
	unsigned := r
	unsigned.Signature = ""
	want, _ := unsigned.Encode()
	if !bytes.Equal(msg, append([]byte("camvault-redaction-report-v1\n"), want...)) {
		t.Errorf("signed message %q", msg)
	}
	got, err := Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(pub); err != nil {
		t.Fatal(err)
	}
	unsignedLine, _ := unsigned.Encode()
	if u, err := Parse(unsignedLine); err != nil {
		t.Fatal(err)
	} else if err := u.Verify(pub); err == nil {
		t.Error("an unsigned report verified")
	}
	if _, err := Parse(bytes.Replace(line, []byte(`"version":1`), []byte(`"version":2`), 1)); err == nil {
		t.Error("version 2 parsed")
	}
}
