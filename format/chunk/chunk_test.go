package chunk

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"filippo.io/age"
)

func testKey(t testing.TB) (*SessionKey, *Opener) {
	t.Helper()
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewSessionKey([]age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	o, err := UnwrapSessionKey(k.Wrapped(), id)
	if err != nil {
		t.Fatal(err)
	}
	return k, o
}

func testHeader(seq uint64) Header {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return Header{Incident: "inc-1", Session: "ses-1", Track: TrackOriginal, Seq: seq, StartNS: 0, EndNS: 2e9,
		Wall: now, RetainUntil: now.Add(28 * 24 * time.Hour), Codec: "fmp4:h264"}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k, o := testKey(t)
	pt := make([]byte, 100_000)
	rand.Read(pt)
	c, err := k.Seal(testHeader(3), pt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c.Bytes, pt[:64]) {
		t.Fatal("plaintext visible in chunk")
	}
	h, got, err := o.Open(c.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pt) || h.Seq != 3 || h.Alg != AlgAES256GCM {
		t.Fatalf("round trip mismatch: seq %d alg %s", h.Seq, h.Alg)
	}
}

func TestEveryByteIsAuthenticated(t *testing.T) {
	k, o := testKey(t)
	c, err := k.Seal(testHeader(1), []byte("segment bytes of a bodycam"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Bytes {
		mod := append([]byte(nil), c.Bytes...)
		mod[i] ^= 0x01
		if _, _, err := o.Open(mod); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestHeaderBindsPlace(t *testing.T) {
	k, o := testKey(t)
	c1, _ := k.Seal(testHeader(1), []byte("one"))
	c2, _ := k.Seal(testHeader(2), []byte("two"))
	// Transplant chunk 2's ciphertext under chunk 1's header.
	_, aad1, _, _ := Parse(c1.Bytes)
	_, _, ct2, _ := Parse(c2.Bytes)
	franken := append(append([]byte(nil), aad1...), ct2...)
	if _, _, err := o.Open(franken); !errors.Is(err, ErrAuth) {
		t.Fatalf("transplanted ciphertext: %v, want ErrAuth", err)
	}
	// Another session's key cannot open it.
	_, other := testKey(t)
	if _, _, err := other.Open(c1.Bytes); !errors.Is(err, ErrAuth) {
		t.Fatalf("foreign key: %v, want ErrAuth", err)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	k, _ := testKey(t)
	c, _ := k.Seal(testHeader(1), []byte("x"))
	cases := map[string][]byte{
		"empty":       nil,
		"short":       []byte("CAMV"),
		"bad magic":   append([]byte("XXXXXXXX"), c.Bytes[8:]...),
		"bad version": append(append([]byte(Magic), 9), c.Bytes[9:]...),
		"huge header": append([]byte(Magic+"\x01\xff\xff\xff\xff"), c.Bytes[13:]...),
		"truncated":   c.Bytes[:len(c.Bytes)-20],
	}
	for name, b := range cases {
		if _, _, _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestUnknownTrackRefused(t *testing.T) {
	k, _ := testKey(t)
	h := testHeader(1)
	h.Track = "bogus"
	if _, err := k.Seal(h, []byte("x")); err == nil {
		t.Fatal("sealed an unknown track")
	}
}

func FuzzParse(f *testing.F) {
	id, _ := age.GenerateX25519Identity()
	k, _ := NewSessionKey([]age.Recipient{id.Recipient()})
	c, _ := k.Seal(testHeader(1), []byte("seed"))
	f.Add(c.Bytes)
	f.Add([]byte(Magic + "\x01\x00\x00\x00\x02{}"))
	o, _ := UnwrapSessionKey(k.Wrapped(), id)
	f.Fuzz(func(t *testing.T, b []byte) {
		Parse(b)
		o.Open(b)
	})
}

// BenchmarkSeal measures the seal stage's work on 1 MB segments beside the
// raw cost of the same primitives (SHA-256 twice and AES-256-GCM) on the
// same buffer, so the ratio is meaningful on a noisy machine.
func BenchmarkSeal(b *testing.B) {
	k, _ := testKey(b)
	pt := make([]byte, 1<<20)
	rand.Read(pt)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(pt)))
		for i := 0; i < b.N; i++ {
			c, err := k.Seal(testHeader(uint64(i)), pt)
			if err != nil {
				b.Fatal(err)
			}
			c.Release() // as the store stage does once the chunk is durable
		}
	})
	b.Run("raw-sha256x2+aesgcm", func(b *testing.B) {
		b.SetBytes(int64(len(pt)))
		benchRaw(b, pt)
	})
}
