package backoffice

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMayReceive: everyone but the auditor gets the live feed; the auditor
// gets holds and retention deletions only; an unknown role gets nothing.
func TestMayReceive(t *testing.T) {
	all := []string{"camera.warning", "camera.location", "incident.started", "incident.ended", "incident.interrupted",
		"transcode.shed", "storage.degraded", "hold.placed", "hold.released", "retention.deleted"}
	audit := map[string]bool{"hold.placed": true, "hold.released": true, "retention.deleted": true}
	for _, typ := range all {
		for _, r := range []Role{RoleOperator, RoleReviewer, RoleAdmin} {
			if !MayReceive(r, typ) {
				t.Errorf("%s may not receive %s", r, typ)
			}
		}
		if got := MayReceive(RoleAuditor, typ); got != audit[typ] {
			t.Errorf("auditor receives %s: %v, want %v", typ, got, audit[typ])
		}
		if MayReceive("visitor", typ) {
			t.Errorf("unknown role receives %s", typ)
		}
	}
	if MayReceive(RoleAuditor, "holdings") || MayReceive(RoleAuditor, "hold") {
		t.Error("hold.* matched a type outside the family")
	}
}

func TestTokens(t *testing.T) {
	const file = `# name role token
alice operator tok-alice-0123456789

bob   auditor  tok-bob-0123456789abc
`
	tk, err := ParseTokens(strings.NewReader(file))
	if err != nil || tk.Len() != 2 {
		t.Fatalf("parse: %v (%d tokens)", err, tk.Len())
	}
	req := func(h string) *http.Request {
		r, _ := http.NewRequest("GET", "/api/v1/events", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return r
	}
	if who, err := tk.Authenticate(req("Bearer tok-bob-0123456789abc")); err != nil || who != (Principal{Name: "bob", Role: RoleAuditor}) {
		t.Fatalf("bob: %+v, %v", who, err)
	}
	if who, err := tk.Authenticate(req("bearer tok-alice-0123456789")); err != nil || who != (Principal{Name: "alice", Role: RoleOperator}) {
		t.Fatalf("alice (lower-case scheme): %+v, %v", who, err)
	}
	for _, h := range []string{"", "Bearer ", "Bearer tok-alice-012345678", "Bearer tok-alice-0123456789x",
		"Basic dG9rLWFsaWNlLTAxMjM0NTY3ODk=", "tok-alice-0123456789"} {
		if _, err := tk.Authenticate(req(h)); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%q: %v, want ErrUnauthorized", h, err)
		}
	}
	for name, bad := range map[string]string{
		"fields":    "alice operator",
		"role":      "alice superuser tok-alice-0123456789",
		"short":     "alice operator short",
		"dup name":  "alice operator tok-alice-0123456789\nalice admin tok-alice-9876543210",
		"dup token": "alice operator tok-alice-0123456789\nbob admin tok-alice-0123456789",
	} {
		if _, err := ParseTokens(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable token file: %v", err)
	}
	os.Chmod(path, 0o600)
	if tk, err := LoadTokens(path); err != nil || tk.Len() != 2 {
		t.Fatalf("load: %v", err)
	}
}

// TestVerifySignature: what SignatureHeader signs verifies; a changed
// body, another secret, a stale or future timestamp and malformed headers
// do not.
func TestVerifySignature(t *testing.T) {
	secret := []byte("0123456789abcdef-secret")
	body := []byte(`{"id":7,"type":"incident.started","camera":"cam1"}`)
	at := time.Unix(1_800_000_000, 0)
	h := SignatureHeader(secret, at, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") || len(h) != len("t=1800000000,v1=")+64 {
		t.Fatalf("header %q", h)
	}
	const window = 5 * time.Minute
	if err := VerifySignature(secret, h, body, at.Add(4*time.Minute), window); err != nil {
		t.Fatalf("valid signature: %v", err)
	}
	// Two v1 values (a receiver mid-rotation sees either): one match suffices.
	other := SignatureHeader([]byte("another-secret-of-16+"), at, body)
	if err := VerifySignature(secret, other+","+strings.Split(h, ",")[1], body, at, window); err != nil {
		t.Fatalf("second v1: %v", err)
	}
	tampered := []byte(strings.Replace(string(body), "cam1", "cam2", 1))
	fail := map[string]error{
		"tampered body": VerifySignature(secret, h, tampered, at, window),
		"other secret":  VerifySignature([]byte("0123456789abcdef-other"), h, body, at, window),
		"old":           VerifySignature(secret, h, body, at.Add(window+time.Second), window),
		"future":        VerifySignature(secret, h, body, at.Add(-window-time.Second), window),
		"no t":          VerifySignature(secret, strings.Split(h, ",")[1], body, at, window),
		"no v1":         VerifySignature(secret, "t=1800000000", body, at, window),
		"bad hex":       VerifySignature(secret, "t=1800000000,v1=zz", body, at, window),
		"two t":         VerifySignature(secret, "t=1,"+h, body, at, window),
		"garbage":       VerifySignature(secret, "garbage", body, at, window),
		"empty secret":  VerifySignature(nil, h, body, at, window),
		"no window":     VerifySignature(secret, h, body, at, 0),
		// Moving the timestamp forward to pass the window breaks the HMAC.
		"moved t": VerifySignature(secret, strings.Replace(h, "t=1800000000", "t=1800000600", 1), body, at.Add(10*time.Minute), window),
	}
	for name, err := range fail {
		if !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want ErrSignature", name, err)
		}
	}
	if err := fail["old"]; !strings.Contains(err.Error(), "replay window") {
		t.Errorf("old timestamp error does not say why: %v", err)
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if s, err := LoadSecret(write("ok", "  0123456789abcdef0123\n", 0o600)); err != nil || string(s) != "0123456789abcdef0123" {
		t.Fatalf("secret %q, %v", s, err)
	}
	if _, err := LoadSecret(write("short", "short\n", 0o600)); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := LoadSecret(write("open", "0123456789abcdef0123", 0o640)); err == nil {
		t.Fatal("group-readable secret accepted")
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
}
