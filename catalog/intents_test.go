package catalog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"camvault/format/manifest"
)

func intentChunk(incident, session, track string, seq uint64, t0 time.Time) Chunk {
	return Chunk{Incident: incident, Session: session, Track: track, Seq: seq,
		Object:  fmt.Sprintf("%s/%s/%s/%08d.chunk", incident, session, track, seq),
		StartNS: int64(seq) * 2e9, EndNS: int64(seq+1) * 2e9, Wall: t0, RetainUntil: t0.Add(28 * 24 * time.Hour),
		PlainSize: 10, CipherSize: 30, Samples: 3, VideoSamples: 2, PlainSHA256: "p", CipherSHA256: "c"}
}

// TestIntentBecomesChunk: an intent is in the catalog from before the put
// and is replaced by the chunk row in the commit's own transaction, so
// the object is accounted for at every moment.
func TestIntentBecomesChunk(t *testing.T) { forEachEngine(t, testIntentBecomesChunk) }

func testIntentBecomesChunk(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := start(t, c, "s1", t0)
	ch := intentChunk(s.Incident, "s1", "original", 0, t0)
	if known, _, err := c.Accounted(ctx, ch.Object); err != nil || known {
		t.Fatalf("before its intent: known %v (%v)", known, err)
	}
	if err := c.RecordIntent(ctx, ch, t0); err != nil {
		t.Fatal(err)
	}
	if known, _, err := c.Accounted(ctx, ch.Object); err != nil || !known {
		t.Fatalf("with its intent: known %v (%v)", known, err)
	}
	pending, err := c.PendingIntents(ctx)
	if err != nil || len(pending) != 1 || pending[0].Chunk != ch || pending[0].Status != IntentPending {
		t.Fatalf("pending intents %+v (%v), want %+v", pending, err, ch)
	}
	if _, err := c.CommitChunk(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if all, err := c.Intents(ctx); err != nil || len(all) != 0 {
		t.Fatalf("intents after the commit: %+v (%v)", all, err)
	}
	if known, _, err := c.Accounted(ctx, ch.Object); err != nil || !known {
		t.Fatalf("committed: known %v (%v)", known, err)
	}
}

// TestCommitRecovered: a chunk found at a restart joins its running
// session's chain in order (a hole before it on the original track
// becomes a gap record), and nothing else: not after its session ended,
// not behind a later chunk of its track.
func TestCommitRecovered(t *testing.T) { forEachEngine(t, testCommitRecovered) }

func testCommitRecovered(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := start(t, c, "s1", t0)
	for seq := uint64(0); seq < 2; seq++ {
		if _, err := c.CommitChunk(ctx, intentChunk(s.Incident, "s1", "original", seq, t0)); err != nil {
			t.Fatal(err)
		}
	}
	// Seq 2's put never landed, seq 3's did: 3 is committed after a gap
	// for 2; its proxy follows it.
	for _, ch := range []Chunk{intentChunk(s.Incident, "s1", "original", 3, t0), intentChunk(s.Incident, "s1", "proxy", 3, t0)} {
		if err := c.RecordIntent(ctx, ch, t0); err != nil {
			t.Fatal(err)
		}
	}
	pending, _ := c.PendingIntents(ctx)
	if len(pending) != 2 || pending[0].Track != "original" || pending[1].Track != "proxy" {
		t.Fatalf("pending intents in cut order: %+v", pending)
	}
	for _, in := range pending {
		if _, err := c.CommitRecovered(ctx, in, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if all, _ := c.Intents(ctx); len(all) != 0 {
		t.Fatalf("intents left: %+v", all)
	}
	lines, _ := c.ManifestLines(ctx, s.Incident)
	recs, _, err := manifest.VerifyChain(s.Incident, lines)
	if err != nil {
		t.Fatal(err)
	}
	got := ""
	for _, r := range recs {
		got += fmt.Sprintf("%s:%s:%d ", r.Kind, r.Track, r.Seq)
	}
	if want := "session::0 chunk:original:0 chunk:original:1 gap:original:2 chunk:original:3 chunk:proxy:3 "; got != want {
		t.Fatalf("manifest %q, want %q", got, want)
	}
	if g := recs[3]; g.StartNS != 4e9 || g.EndNS != 6e9 {
		t.Fatalf("gap covers %d..%d ns, want the hole 4e9..6e9", g.StartNS, g.EndNS)
	}

	// Behind a later chunk: out of order, nothing written.
	late := intentChunk(s.Incident, "s1", "original", 1, t0)
	late.Object = "late.chunk"
	if _, err := c.CommitRecovered(ctx, Intent{Chunk: late}, t0); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("behind seq 3: %v, want ErrOutOfOrder", err)
	}
	// After the session's end: out of order too.
	if _, err := c.EndSession(ctx, s.Incident, "s1", t0.Add(time.Minute), StatusClosed, "teardown"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CommitRecovered(ctx, Intent{Chunk: intentChunk(s.Incident, "s1", "original", 4, t0)}, t0); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("after the end: %v, want ErrOutOfOrder", err)
	}
	if n, _ := c.ManifestLines(ctx, s.Incident); len(n) != len(lines)+1 {
		t.Fatalf("refused commits wrote %d records", len(n)-len(lines)-1)
	}
}

// TestQuarantineAndDue: a quarantined intent keeps accounting for its
// object and comes due at its deadline, unless its incident is held.
func TestQuarantineAndDue(t *testing.T) { forEachEngine(t, testQuarantineAndDue) }

func testQuarantineAndDue(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := start(t, c, "s1", t0)
	ch := intentChunk(s.Incident, "s1", "original", 5, t0)
	if err := c.RecordIntent(ctx, ch, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.QuarantineIntent(ctx, ch.Object, "session has ended"); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.PendingIntents(ctx); len(p) != 0 {
		t.Fatalf("quarantined intent still pending: %+v", p)
	}
	if all, _ := c.Intents(ctx); len(all) != 1 || all[0].Status != IntentQuarantined || all[0].Note != "session has ended" {
		t.Fatalf("intents %+v", all)
	}
	if known, _, _ := c.Accounted(ctx, ch.Object); !known {
		t.Fatal("quarantined object unaccounted for")
	}
	if due, err := c.DueIntents(ctx, ch.RetainUntil.Add(-time.Second), 10); err != nil || len(due) != 0 {
		t.Fatalf("due before the deadline: %+v (%v)", due, err)
	}
	due, err := c.DueIntents(ctx, ch.RetainUntil, 10)
	if err != nil || len(due) != 1 || due[0].Object != ch.Object || due[0].Status != IntentQuarantined || due[0].Size != 30 {
		t.Fatalf("due at the deadline: %+v (%v)", due, err)
	}
	if err := c.PlaceHold(ctx, Hold{Incident: s.Incident, Reason: "r", Reference: "PR-1", PlacedBy: "a", PlacedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if due, _ := c.DueIntents(ctx, ch.RetainUntil, 10); len(due) != 0 {
		t.Fatalf("due under a hold: %+v", due)
	}
	if _, held, _ := c.Accounted(ctx, ch.Object); !held {
		t.Fatal("held incident's object not reported held")
	}
	if err := c.DropIntent(ctx, ch.Object); err != nil {
		t.Fatal(err)
	}
	if known, _, _ := c.Accounted(ctx, ch.Object); known {
		t.Fatal("dropped intent still accounts for its object")
	}
}

// TestAccountedAnchors: a checkpoint anchor is accounted for while the
// catalog holds its checkpoint and the incident is not deleted; a key of
// any other shape only by a chunk row or an intent.
func TestAccountedAnchors(t *testing.T) { forEachEngine(t, testAccountedAnchors) }

func testAccountedAnchors(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := start(t, c, "s1", t0)
	if err := c.AddCheckpoint(ctx, manifest.Checkpoint{Incident: s.Incident, Index: 0, Head: "h", Time: t0}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		manifest.AnchorKey(s.Incident, 0):  true,
		manifest.AnchorKey(s.Incident, 1):  false, // no such checkpoint
		manifest.AnchorKey("inc-other", 0): false,
		s.Incident + "/checkpoints/0.json": false,
		"stray/file":                       false,
	} {
		if known, _, err := c.Accounted(ctx, key); err != nil || known != want {
			t.Errorf("%s: known %v (%v), want %v", key, known, err, want)
		}
	}
}

// TestRecordIntentConcurrently: the store stage's workers record intents
// at once; they are grouped into shared transactions, and a bad one (an
// object already announced) fails alone.
func TestRecordIntentConcurrently(t *testing.T) { forEachEngine(t, testRecordIntentConcurrently) }

func testRecordIntentConcurrently(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := start(t, c, "s1", t0)
	dup := intentChunk(s.Incident, "s1", "original", 0, t0)
	if err := c.RecordIntent(ctx, dup, t0); err != nil {
		t.Fatal(err)
	}
	const n = 64
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ch := intentChunk(s.Incident, "s1", "original", uint64(i), t0) // i == 0 is dup's object
			errs <- c.RecordIntent(ctx, ch, t0)
		}()
	}
	failed := 0
	for range n {
		if err := <-errs; err != nil {
			failed++
		}
	}
	all, err := c.Intents(ctx)
	if failed != 1 || err != nil || len(all) != n {
		t.Fatalf("%d failed (want the duplicate alone), %d intents recorded (%v), want %d", failed, len(all), err, n)
	}
}

// BenchmarkRecordIntent: one intent alone (a durable transaction each),
// and eight store workers recording at once (group commit shares them).
func BenchmarkRecordIntent(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	c.AddCamera(ctx, Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()})
	s, err := c.StartSession(ctx, SessionStart{Camera: "cam1", Officer: "o", Session: "s1", WrappedKey: []byte("k"), Now: time.Now(), Grace: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	var i atomic.Int64
	one := func() {
		ch := intentChunk(s.Incident, "s1", "original", uint64(i.Add(1)), time.Now())
		if err := c.RecordIntent(ctx, ch, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			one()
		}
	})
	b.Run("8-workers", func(b *testing.B) {
		b.SetParallelism(8 / max(1, runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	})
}
