package catalog

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"camvault/format/manifest"
	"camvault/internal/pgtest"
)

// engine is one of the catalog's database engines; every test of the
// catalog runs on each (forEachEngine), the same assertions on both.
type engine struct {
	name string
	dsn  func(testing.TB) string // a new, empty catalog's DSN
}

var engines = []engine{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "catalog.db") }},
	{"postgres", pgtest.NewCatalog},
}

// forEachEngine runs test once for each engine, as a subtest named after
// it. The tests run in parallel: each has a catalog of its own, and a
// PostgreSQL one spends most of its time waiting for the server.
func forEachEngine(t *testing.T, test func(*testing.T, engine)) {
	t.Parallel()
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			test(t, e)
		})
	}
}

// openTest opens a new catalog on e, closed at the test's end, with the
// camera cam1 registered.
func openTest(t *testing.T, e engine) *Catalog {
	t.Helper()
	c, err := Open(e.dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.AddCamera(context.Background(), Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t *testing.T, c *Catalog, session string, now time.Time) SessionStarted {
	t.Helper()
	s, err := c.StartSession(context.Background(), SessionStart{Camera: "cam1", Officer: "o", Session: session, WrappedKey: []byte("k"), Now: now, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIncidentLifecycle(t *testing.T) { forEachEngine(t, testIncidentLifecycle) }

func testIncidentLifecycle(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s1 := start(t, c, "s1", t0)
	if s1.Resumed {
		t.Fatal("first session resumed something")
	}
	if _, err := c.CommitChunk(ctx, Chunk{Incident: s1.Incident, Session: "s1", Track: "original", Seq: 1, Object: "a", Wall: t0, RetainUntil: t0,
		PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
		t.Fatal(err)
	}
	// Replaying the same (session, track, seq) is refused.
	if _, err := c.CommitChunk(ctx, Chunk{Incident: s1.Incident, Session: "s1", Track: "original", Seq: 1, Object: "b", Wall: t0, RetainUntil: t0}); err == nil {
		t.Fatal("duplicate chunk committed")
	}
	if _, err := c.EndSession(ctx, s1.Incident, "s1", t0.Add(10*time.Second), StatusInterrupted, "lost"); err != nil {
		t.Fatal(err)
	}
	// Reconnect within grace continues the incident, with a gap record.
	s2 := start(t, c, "s2", t0.Add(30*time.Second))
	if !s2.Resumed || s2.Incident != s1.Incident {
		t.Fatalf("reconnect within grace: %+v", s2)
	}
	c.EndSession(ctx, s2.Incident, "s2", t0.Add(40*time.Second), StatusClosed, "teardown")
	// After the grace window a new incident opens.
	s3 := start(t, c, "s3", t0.Add(5*time.Minute))
	if s3.Resumed || s3.Incident == s1.Incident {
		t.Fatalf("after grace: %+v", s3)
	}
	lines, _ := c.ManifestLines(ctx, s1.Incident)
	recs, _, err := manifest.VerifyChain(s1.Incident, lines)
	if err != nil {
		t.Fatal(err)
	}
	kinds := ""
	for _, r := range recs {
		kinds += r.Kind + " "
	}
	if want := "session chunk end gap session end "; kinds != want {
		t.Fatalf("manifest kinds %q, want %q", kinds, want)
	}
	alerts, _ := c.AlertsAfter(ctx, 0, 100)
	var types []string
	for _, a := range alerts {
		types = append(types, a.Type)
	}
	if len(types) != 4 || types[0] != "incident.started" || types[1] != "incident.interrupted" || types[2] != "incident.ended" || types[3] != "incident.started" {
		t.Fatalf("alerts %v", types)
	}
}

// TestFramesByKind: the catalog splits an incident's access units into
// video and audio frames; chunks from a catalog that predates the split
// leave it unknown rather than counting every unit as video or audio.
func TestFramesByKind(t *testing.T) { forEachEngine(t, testFramesByKind) }

func testFramesByKind(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s1 := start(t, c, "s1", t0)
	for seq, n := range [][2]int64{{90, 150}, {60, 94}} {
		if _, err := c.CommitChunk(ctx, Chunk{Incident: s1.Incident, Session: "s1", Track: "original", Seq: uint64(seq + 1), Object: fmt.Sprint(seq),
			Wall: t0, RetainUntil: t0, Samples: n[1], VideoSamples: n[0], PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	in, err := c.Incident(ctx, s1.Incident)
	if err != nil {
		t.Fatal(err)
	}
	if !in.FramesKnown || in.VideoFrames != 150 || in.AudioFrames != 94 || in.Samples != 244 {
		t.Fatalf("known %v: %d video, %d audio of %d", in.FramesKnown, in.VideoFrames, in.AudioFrames, in.Samples)
	}

	// A chunk committed before the column existed has no split.
	if _, err := c.db.ExecContext(ctx, `UPDATE chunks SET video_samples = NULL WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	if in, err = c.Incident(ctx, s1.Incident); err != nil {
		t.Fatal(err)
	}
	if in.FramesKnown || in.VideoFrames != 0 || in.AudioFrames != 0 || in.Samples != 244 {
		t.Fatalf("with a chunk of unknown split: known %v, %d video, %d audio of %d", in.FramesKnown, in.VideoFrames, in.AudioFrames, in.Samples)
	}
}

func TestInterruptRunning(t *testing.T) { forEachEngine(t, testInterruptRunning) }

func testInterruptRunning(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	now := time.Now()
	s := start(t, c, "s1", now)
	incs, err := c.InterruptRunning(ctx, now)
	if err != nil || len(incs) != 1 || incs[0] != s.Incident {
		t.Fatalf("interrupt: %v %v", incs, err)
	}
	in, err := c.Incident(ctx, s.Incident)
	if err != nil || in.Status != StatusInterrupted {
		t.Fatalf("status %q %v", in.Status, err)
	}
	if again, _ := c.InterruptRunning(ctx, now); len(again) != 0 {
		t.Fatal("interrupted twice")
	}
}

func TestUnknownLookups(t *testing.T) { forEachEngine(t, testUnknownLookups) }

func testUnknownLookups(t *testing.T, e engine) {
	c := openTest(t, e)
	if _, err := c.Camera(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("camera: %v", err)
	}
	if _, err := c.AppendRecord(context.Background(), manifest.Record{Incident: "nope", Kind: manifest.KindGap}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("append: %v", err)
	}
}

// BenchmarkCommitChunk measures one durable chunk commit (row + manifest
// record, fsync'd WAL), the serial step every segment passes, the same
// with the chunk's intent recorded first (what the write path does), and
// beside them the raw cost of one durable row in the same database: one
// INSERT in its own transaction.
func BenchmarkCommitChunk(b *testing.B) {
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
	i := 0 // across runs (-count), so every chunk is a new one
	b.Run("commit", func(b *testing.B) {
		for b.Loop() {
			i++
			if _, err := c.CommitChunk(ctx, Chunk{Incident: s.Incident, Session: "s1", Track: "original", Seq: uint64(i),
				Object: fmt.Sprintf("o%d", i), Wall: time.Now(), RetainUntil: time.Now(), PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What a chunk costs with its intent: the intent's own durable
	// transaction before the put, then the commit that replaces it.
	b.Run("intent+commit", func(b *testing.B) {
		for b.Loop() {
			i++
			ch := Chunk{Incident: s.Incident, Session: "s1", Track: "original", Seq: uint64(i),
				Object: fmt.Sprintf("o%d", i), Wall: time.Now(), RetainUntil: time.Now(), PlainSHA256: "p", CipherSHA256: "c"}
			if err := c.RecordIntent(ctx, ch, time.Now()); err != nil {
				b.Fatal(err)
			}
			if _, err := c.CommitChunk(ctx, ch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		if _, err := c.db.Exec(`CREATE TABLE IF NOT EXISTS bench_raw(k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			i++
			tx, err := c.db.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(`INSERT INTO bench_raw(v) VALUES(?)`, fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDueQuery: "what is due" with 100 000 chunks across 1 000
// incidents, half of them due.
func BenchmarkDueQuery(b *testing.B) {
	c, err := Open(filepath.Join(b.TempDir(), "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	raw, _ := c.db.BeginTx(ctx, nil)
	tx := &dbTx{tx: raw, d: c.db.d}
	tx.ExecContext(ctx, `INSERT INTO cameras(id, officer, secret_mac, created_at) VALUES('cam','o',x'00',?)`, t0)
	for i := 0; i < 1000; i++ {
		inc := fmt.Sprintf("inc-%04d", i)
		tx.ExecContext(ctx, `INSERT INTO incidents(id, camera, officer, started_at, status, head, next_index) VALUES(?,?,?,?,?,?,0)`, inc, "cam", "o", t0, StatusClosed, "")
		tx.ExecContext(ctx, `INSERT INTO sessions(id, incident, wrapped_key, started_at) VALUES(?,?,x'00',?)`, "s"+inc, inc, t0)
		for j := 0; j < 100; j++ {
			deadline := t0.Add(time.Duration(i*100+j) * time.Minute)
			if _, err := tx.ExecContext(ctx, `INSERT INTO chunks(incident, session, track, seq, object, start_ns, end_ns, wall, retain_until, plain_size, cipher_size, plain_sha256, cipher_sha256)
				VALUES(?,?,?,?,?,0,0,?,?,0,0,'','')`, inc, "s"+inc, "original", j, fmt.Sprintf("%s/%d", inc, j), t0, deadline); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := raw.Commit(); err != nil {
		b.Fatal(err)
	}
	now := t0.Add(50_000 * time.Minute)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		due, err := c.DueChunks(ctx, now, 1000)
		if err != nil || len(due) != 1000 {
			b.Fatalf("%d due, %v", len(due), err)
		}
	}
}
