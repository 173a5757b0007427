package manifest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"
)

// FuzzVerifyChain: any bytes as a manifest either verify or fail with a
// ChainError naming the record, never a panic; what verifies is a chain
// whose every record follows its predecessor, so appending the same
// records to a fresh chain gives the same head.
func FuzzVerifyChain(f *testing.F) {
	var chain Chain
	var lines [][]byte
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for i, kind := range []string{KindSession, KindChunk, KindGap, KindEnd} {
		r := Record{Incident: "inc-1", Index: uint64(i), Kind: kind, Session: "ses-1", Track: "original", Seq: uint64(i), Wall: t0}
		line, _, err := chain.Append(&r)
		if err != nil {
			f.Fatal(err)
		}
		lines = append(lines, line)
	}
	f.Add(bytes.Join(lines, []byte("\n")))
	f.Add(lines[0])
	f.Add([]byte(`{"incident":"inc-1","index":0,"prev":"00"}`))
	f.Add([]byte("{}\n{}"))
	f.Fuzz(func(t *testing.T, blob []byte) {
		lines := bytes.Split(blob, []byte("\n"))
		recs, head, err := VerifyChain("inc-1", lines)
		if err != nil {
			if _, ok := err.(*ChainError); !ok {
				t.Fatalf("error %T %v, want a *ChainError", err, err)
			}
			return
		}
		if len(recs) != len(lines) {
			t.Fatalf("verified %d records of %d lines", len(recs), len(lines))
		}
		var again Chain
		for i, line := range lines {
			if _, ok := again.Follow(line, recs[i].Prev); !ok {
				t.Fatalf("record %d verified but does not follow", i)
			}
		}
		if again.Head() != head {
			t.Fatalf("head %s, re-followed %s", head, again.Head())
		}
	})
}

// FuzzCheckpoint: a checkpoint file read back from a bundle or an anchor
// verifies only with the signature the key made over exactly its fields.
func FuzzCheckpoint(f *testing.F) {
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	cp := Checkpoint{Incident: "inc-1", Index: 3, Head: Genesis, Time: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	cp.Sign(key)
	good, _ := json.Marshal(&cp)
	f.Add(good)
	f.Add([]byte(`{"incident":"inc-1","index":3,"signature":"AAAA"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Checkpoint
		if json.Unmarshal(b, &c) != nil {
			return
		}
		if c.Verify(pub) != nil {
			return
		}
		// It verified: it must be the signed checkpoint, field for field.
		if c.Incident != cp.Incident || c.Index != cp.Index || c.Head != cp.Head || !c.Time.Equal(cp.Time) {
			t.Fatalf("a checkpoint that was never signed verifies: %+v", c)
		}
	})
}
