package ingest

import (
	"context"
	"errors"
	"testing"

	"github.com/pion/rtp"
)

type cameras map[string][]byte

func (c cameras) LookupCamera(_ context.Context, id string) (string, []byte, bool, error) {
	mac, ok := c[id]
	if !ok {
		return "", nil, false, errors.New("not found")
	}
	return "officer " + id, mac, id == "revoked", nil
}

func TestPepperAuth(t *testing.T) {
	pepper := []byte("0123456789abcdef0123456789abcdef")
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 32 {
		t.Fatalf("secret %q shorter than 160 bits of base32", secret)
	}
	other, _ := NewSecret()
	if other == secret {
		t.Fatal("two secrets are equal")
	}
	a := &PepperAuth{Pepper: pepper, Cameras: cameras{
		"cam1":    SecretMAC(pepper, secret),
		"revoked": SecretMAC(pepper, secret),
	}}
	cam, err := a.Authenticate(context.Background(), "cam1", secret)
	if err != nil || cam.ID != "cam1" || cam.Officer != "officer cam1" {
		t.Fatalf("good secret: %+v %v", cam, err)
	}
	for _, tc := range []struct{ id, secret string }{
		{"cam1", other}, {"cam1", ""}, {"nosuch", secret}, {"revoked", secret}, {"CAM1", secret}, {"../x", secret},
	} {
		if _, err := a.Authenticate(context.Background(), tc.id, tc.secret); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%q/%q: %v, want ErrUnauthorized", tc.id, tc.secret, err)
		}
	}
	// Stored form is the MAC, never the secret.
	if string(SecretMAC(pepper, secret)) == secret || len(SecretMAC(pepper, secret)) != 32 {
		t.Fatal("secret MAC is not an HMAC-SHA-256")
	}
}

func TestValidCameraID(t *testing.T) {
	for _, ok := range []string{"cam1", "a", "demo-cam", "unit_7"} {
		if !ValidCameraID(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "-x", "Cam", "a/b", "a b", "..", "x\x00", string(make([]byte, 65))} {
		if ValidCameraID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidNALUs(t *testing.T) {
	good := [][]byte{{0x67, 1}, {0x68, 1}, {0x65, 1, 2}}
	if out, err := validNALUs(good); err != nil || len(out) != 3 {
		t.Fatalf("good units: %d, %v", len(out), err)
	}
	mixed := [][]byte{{0x65, 1}, {0x80 | 0x01}, {0x00}, {0x1c, 0x85}, {}}
	out, err := validNALUs(mixed)
	if err == nil || len(out) != 1 || out[0][0] != 0x65 {
		t.Fatalf("mixed units: %d kept, %v", len(out), err)
	}
	if out, err := validNALUs([][]byte{{0xff}}); out != nil || err == nil {
		t.Fatal("all-invalid access unit kept")
	}
}

func TestReplayGuard(t *testing.T) {
	var td trackDepack
	for _, tc := range []struct {
		seq  uint16
		want bool
	}{{100, true}, {101, true}, {101, false}, {99, false}, {105, true}, {65535, false}, {200, true}} {
		if got := td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: tc.seq}}); got != tc.want {
			t.Errorf("seq %d: accept %v, want %v", tc.seq, got, tc.want)
		}
	}
	// Wrap-around is progress, not a replay.
	td = trackDepack{}
	td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: 65535}})
	if !td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: 0}}) {
		t.Fatal("sequence wrap-around refused")
	}
}
