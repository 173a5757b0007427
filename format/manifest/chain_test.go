package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"
)

func TestChainLinksAndFollows(t *testing.T) {
	var c Chain
	if c.Head() != Genesis || ChainAt("").Head() != Genesis {
		t.Fatal("an empty chain's head is not Genesis")
	}
	type rec struct {
		N    int    `json:"n"`
		Prev string `json:"prev"`
	}
	var lines [][]byte
	for i := 0; i < 3; i++ {
		line, hash, err := c.Link(func(prev string) ([]byte, error) { return json.Marshal(rec{N: i, Prev: prev}) })
		if err != nil {
			t.Fatal(err)
		}
		if hash != HashLine(line) || c.Head() != hash {
			t.Fatalf("record %d: hash %s, head %s", i, hash, c.Head())
		}
		lines = append(lines, line)
	}
	// Resumed from its head, the chain goes on as if never stopped.
	resumed := ChainAt(HashLine(lines[1]))
	if line, _, _ := resumed.Link(func(prev string) ([]byte, error) { return json.Marshal(rec{N: 2, Prev: prev}) }); string(line) != string(lines[2]) {
		t.Fatalf("resumed chain wrote %s, want %s", line, lines[2])
	}

	var v Chain
	for i, line := range lines {
		var r rec
		json.Unmarshal(line, &r)
		if _, ok := v.Follow(line, r.Prev); !ok {
			t.Fatalf("record %d does not follow", i)
		}
	}
	// A broken link is reported at its line only: the next line is
	// checked against what is stored.
	var w Chain
	_, ok0 := w.Follow(lines[0], Genesis)
	_, ok1 := w.Follow(lines[1], "bogus")
	var r2 rec
	json.Unmarshal(lines[2], &r2)
	_, ok2 := w.Follow(lines[2], r2.Prev)
	if !ok0 || ok1 || !ok2 {
		t.Fatalf("follow: %v %v %v, want true false true", ok0, ok1, ok2)
	}
}

func TestAppendMatchesEncode(t *testing.T) {
	var c Chain
	r := Record{Index: 0, Incident: "inc", Kind: KindSession, Session: "s", Wall: time.Unix(0, 0).UTC()}
	line, hash, err := c.Append(&r)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Index: 0, Incident: "inc", Kind: KindSession, Session: "s", Wall: time.Unix(0, 0).UTC(), Prev: Genesis}
	wline, whash, _ := want.Encode()
	if string(line) != string(wline) || hash != whash || r.Prev != Genesis {
		t.Fatalf("Append: %s %s", line, hash)
	}
}

// The signed messages are part of the written format (docs/FORMAT.md):
// an auditor recomputes them byte for byte.
func TestHeadMessages(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 15, 0, 123456789, time.FixedZone("x", 3600))
	cp := Checkpoint{Incident: "inc-1", Index: 7, Head: "ab", Time: at}
	if got, want := string(cp.SignedBytes()), "camvault-checkpoint-v1\ninc-1\n7\nab\n2026-11-27T09:15:00.123456789Z\n"; got != want {
		t.Fatalf("checkpoint message %q, want %q", got, want)
	}
	if got, want := string(HeadMessage(AuditHeadDomain, 3, "cd", at)), "camvault-audit-head-v1\n3\ncd\n2026-11-27T09:15:00.123456789Z\n"; got != want {
		t.Fatalf("audit head message %q, want %q", got, want)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := HeadMessage(AuditHeadDomain, 3, "cd", at)
	sig := SignHead(priv, msg)
	if !VerifyHead(pub, msg, sig) || VerifyHead(pub, cp.SignedBytes(), sig) || VerifyHead(pub[:5], msg, sig) || VerifyHead(pub, msg, "!") {
		t.Fatal("VerifyHead accepts what it must not, or refuses its own signature")
	}
}

func TestAnchorKey(t *testing.T) {
	if got, want := AnchorKey("inc-1", 42), "inc-1/checkpoints/000000000042.json"; got != want {
		t.Fatalf("AnchorKey = %q, want %q", got, want)
	}
	if got := AnchorPrefix("inc-1"); got != "inc-1/checkpoints/" {
		t.Fatalf("AnchorPrefix = %q", got)
	}
}
