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

// TestGapRangesAndOldGapsVerify: a manifest holding a gap as written
// before gaps carried their range and one with the optional range fields
// (docs/FORMAT.md "Manifest") verifies, and the range is read back.
func TestGapRangesAndOldGapsVerify(t *testing.T) {
	lines := [][]byte{
		[]byte(`{"index":0,"incident":"inc","kind":"session","session":"s1","seq":0,"start_ns":0,"end_ns":0,"wall":"2026-11-27T10:00:00Z","prev":"` + Genesis + `"}`),
	}
	lines = append(lines, []byte(`{"index":1,"incident":"inc","kind":"gap","seq":0,"start_ns":0,"end_ns":0,"wall":"2026-11-27T10:00:06.229Z","note":"reconnect after 771ms","prev":"`+HashLine(lines[0])+`"}`))
	lines = append(lines, []byte(`{"index":2,"incident":"inc","kind":"gap","seq":0,"start_ns":0,"end_ns":0,"wall":"2026-11-27T10:00:07Z",`+
		`"from_session":"s1","from_seq":2,"from_ns":4000000000,"from_wall":"2026-11-27T10:00:04Z","to_wall":"2026-11-27T10:00:07Z",`+
		`"note":"reconnect after 3s","prev":"`+HashLine(lines[1])+`"}`))
	recs, _, err := VerifyChain("inc", lines)
	if err != nil {
		t.Fatalf("old and ranged gaps: %v", err)
	}
	old, ranged := recs[1], recs[2]
	if old.FromWall != nil || old.ToWall != nil || old.FromSession != "" {
		t.Fatalf("old gap read with a range: %+v", old)
	}
	if ranged.FromSession != "s1" || ranged.FromSeq != 2 || ranged.FromNS != 4e9 || ranged.FromWall == nil || ranged.ToWall == nil ||
		ranged.ToWall.Sub(*ranged.FromWall) != 3*time.Second {
		t.Fatalf("ranged gap: %+v", ranged)
	}
	// Re-encoding gives the same line: the hash an auditor computes.
	if line, _, _ := ranged.Encode(); string(line) != string(lines[2]) {
		t.Fatalf("re-encoded\n%s\nstored\n%s", line, lines[2])
	}
}
