package camera

import (
	"context"
	"errors"
	"testing"
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

func TestValidID(t *testing.T) {
	for _, ok := range []string{"cam1", "a", "demo-cam", "unit_7"} {
		if !ValidID(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "-x", "Cam", "a/b", "a b", "..", "x\x00", string(make([]byte, 65))} {
		if ValidID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
