package livegrant

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestGrantSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	now := time.Unix(1_800_000_000, 0)
	g, err := New("ann", "operator", "inc1", "cam1", "officer asked", now, time.Minute, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Sign(priv, g)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(pub, tok, now.Add(30*time.Second))
	if err != nil || got != g {
		t.Fatalf("verify: %+v, %v; want %+v", got, err, g)
	}
	if got.End() != now.Add(10*time.Minute) {
		t.Fatalf("end %v", got.End())
	}
	if _, err := Verify(pub, tok, now.Add(time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("late start: %v, want expired", err)
	}
	if _, err := Verify(otherPub, tok, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("other key: %v", err)
	}
	forged, _ := Sign(otherPriv, g)
	if _, err := Verify(pub, forged, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged: %v", err)
	}
	// A changed body under the old signature.
	g2 := g
	g2.Person = "bob"
	tok2, _ := Sign(priv, g2)
	mixed := tok2[:strings.LastIndexByte(tok2, '.')] + tok[strings.LastIndexByte(tok, '.'):]
	if _, err := Verify(pub, mixed, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("body swapped: %v", err)
	}
	short, _ := New("ann", "operator", "inc1", "cam1", "r", now, time.Minute, 5*time.Second)
	stok, _ := Sign(priv, short)
	if _, err := Verify(pub, stok, now.Add(time.Second)); err != nil || short.StartBy != short.Until {
		t.Fatalf("a view shorter than the start window: %v, start by %d, until %d", err, short.StartBy, short.Until)
	}
	for _, bad := range []string{"", "cvlg1.", "cvlg1..", "x" + tok, tok + "x", "cvlg1.e30." + strings.Repeat("A", 86), strings.Repeat("a", MaxToken+1)} {
		if _, err := Verify(pub, bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzVerify(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	g, _ := New("ann", "operator", "inc1", "cam1", "r", time.Unix(0, 0), time.Minute, time.Hour)
	tok, _ := Sign(priv, g)
	f.Add(tok)
	f.Add("cvlg1.e30.AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		Verify(pub, s, time.Unix(0, 0))
	})
}
