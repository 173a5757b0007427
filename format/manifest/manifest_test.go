package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func chain(t *testing.T, n int) [][]byte {
	t.Helper()
	prev := Genesis
	var lines [][]byte
	for i := 0; i < n; i++ {
		r := Record{Index: uint64(i), Incident: "inc", Kind: KindChunk, Seq: uint64(i), Wall: time.Unix(int64(i), 0).UTC(), Prev: prev}
		line, h, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
		prev = h
	}
	return lines
}

func TestChainVerifies(t *testing.T) {
	lines := chain(t, 5)
	recs, head, err := VerifyChain("inc", lines)
	if err != nil || len(recs) != 5 || head != HashLine(lines[4]) {
		t.Fatalf("verify: %v, %d records", err, len(recs))
	}
}

func TestChainDetectsEdits(t *testing.T) {
	cases := map[string]func([][]byte) [][]byte{
		"edit": func(l [][]byte) [][]byte {
			l[2] = []byte(strings.Replace(string(l[2]), `"seq":2`, `"seq":7`, 1))
			return l
		},
		"drop":    func(l [][]byte) [][]byte { return append(l[:1], l[2:]...) },
		"swap":    func(l [][]byte) [][]byte { l[1], l[2] = l[2], l[1]; return l },
		"garbage": func(l [][]byte) [][]byte { l[3] = []byte("{not json"); return l },
		"unknown": func(l [][]byte) [][]byte { l[0] = []byte(`{"index":0,"evil":1}`); return l },
	}
	for name, mutate := range cases {
		_, _, err := VerifyChain("inc", mutate(chain(t, 5)))
		var ce *ChainError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ChainError", name, err)
		}
	}
	if _, _, err := VerifyChain("other", chain(t, 2)); err == nil {
		t.Error("records of another incident accepted")
	}
}

func TestCheckpointSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	cp := Checkpoint{Incident: "inc", Index: 4, Head: HashLine([]byte("x")), Time: time.Now()}
	cp.Sign(priv)
	if err := cp.Verify(pub); err != nil {
		t.Fatal(err)
	}
	cp.Index = 5
	if err := cp.Verify(pub); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered checkpoint: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	cp.Index = 4
	if err := cp.Verify(other); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("foreign key: %v", err)
	}
}
