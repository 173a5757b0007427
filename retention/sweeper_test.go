package retention

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/storage"
	"camvault/storage/fs"
)

var day0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) set(t time.Time)     { c.t.Store(t.UnixNano()) }
func (c *clock) day(n int) time.Time { t := day0.Add(time.Duration(n) * day); c.set(t); return t }

type world struct {
	cat   *catalog.Catalog
	store *fs.Store
	dir   string // the store's
	clock *clock
	sw    *Sweeper
	// cameras counts the cameras registered so far.
	cameras atomic.Int64
}

func newWorld(t testing.TB) *world { return newWorldOn(t, "") }

// newWorldOn is a world on the catalog dsn ("": a new SQLite file).
func newWorldOn(t testing.TB, dsn string) *world {
	t.Helper()
	dir := t.TempDir()
	if dsn == "" {
		dsn = filepath.Join(dir, "catalog.db")
	}
	cat, err := catalog.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	c := &clock{}
	c.set(day0)
	st, err := fs.Open(filepath.Join(dir, "chunks"), fs.WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &world{cat: cat, store: st, dir: filepath.Join(dir, "chunks"), clock: c, sw: &Sweeper{Catalog: cat, Store: st, Now: c.now}}
}

// record stores an ended incident of n chunks recorded at `at`, with the
// default 28-day deadline.
func (w *world) record(t testing.TB, at time.Time, n int) string {
	t.Helper()
	ctx := context.Background()
	ses := catalog.NewID("ses-", at)
	// A camera per incident: the same camera within the grace window would
	// continue the previous incident.
	camera := fmt.Sprintf("cam%d", w.cameras.Add(1))
	if err := w.cat.AddCamera(ctx, catalog.Camera{ID: camera, Officer: "o", SecretMAC: []byte("m"), CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	s, err := w.cat.StartSession(ctx, catalog.SessionStart{Camera: camera, Officer: "o", Session: ses, WrappedKey: []byte("wrapped"), Now: at})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		obj := chunk.ObjectKey(chunk.Header{Incident: s.Incident, Session: ses, Track: chunk.TrackOriginal, Seq: uint64(i)})
		deadline := at.Add(28 * day)
		if err := w.store.Put(ctx, obj, []byte("sealed bytes"), deadline); err != nil {
			t.Fatal(err)
		}
		if _, err := w.cat.CommitChunk(ctx, catalog.Chunk{Incident: s.Incident, Session: ses, Track: "original", Seq: uint64(i), Object: obj,
			Wall: at, RetainUntil: deadline, CipherSize: 12, PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.cat.EndSession(ctx, s.Incident, ses, at, catalog.StatusClosed, "teardown"); err != nil {
		t.Fatal(err)
	}
	return s.Incident
}

func (w *world) exists(t *testing.T, inc string) bool {
	t.Helper()
	objs, err := w.cat.LiveObjects(context.Background(), inc)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		rc, err := w.store.Get(context.Background(), o)
		if err != nil {
			t.Fatalf("catalog lists %s but the store: %v", o, err)
		}
		rc.Close()
	}
	return len(objs) > 0
}

func (w *world) sweep(t *testing.T) *Result {
	t.Helper()
	res, err := w.sw.Sweep(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeletedAfterDeadline(t *testing.T) {
	w := newWorld(t)
	inc := w.record(t, day0, 3)
	w.clock.day(27)
	if res := w.sweep(t); res.Chunks != 0 || !w.exists(t, inc) {
		t.Fatalf("day 27: swept %d chunks", res.Chunks)
	}
	// The store itself refuses an early delete, whatever the catalog says.
	objs, _ := w.cat.LiveObjects(context.Background(), inc)
	if err := w.store.Delete(context.Background(), objs[0]); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("early delete: %v", err)
	}
	w.clock.day(29)
	if dry, _ := w.sw.Sweep(context.Background(), true); dry.Chunks != 3 || !w.exists(t, inc) {
		t.Fatalf("dry run: %+v", dry)
	}
	res := w.sweep(t)
	if res.Chunks != 3 || len(res.Incidents) != 1 || res.Incidents[0].Incident != inc {
		t.Fatalf("day 29: %+v", res)
	}
	for _, o := range objs {
		if _, err := w.store.Get(context.Background(), o); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s still stored: %v", o, err)
		}
	}
	keys, _ := w.cat.WrappedKeys(context.Background(), inc)
	for s, k := range keys {
		if len(k) != 0 {
			t.Fatalf("session %s key not destroyed", s)
		}
	}
	in, _ := w.cat.Incident(context.Background(), inc)
	if in.Status != catalog.StatusDeleted {
		t.Fatalf("status %q", in.Status)
	}
	audit := w.auditAfterSetUp(t)
	if len(audit) != 1 || !strings.Contains(string(audit[0]), `"action":"retention.deleted"`) || !strings.Contains(string(audit[0]), `"chunks":3`) {
		t.Fatalf("audit trail: %s", audit)
	}
	// Idempotent.
	if again := w.sweep(t); again.Chunks != 0 || len(again.Incidents) != 0 {
		t.Fatalf("second sweep: %+v", again)
	}
	// A deleted incident cannot be held any more.
	err := w.cat.PlaceHold(context.Background(), catalog.Hold{Incident: inc, Reason: "r", Reference: "PR-1", PlacedBy: "admin", PlacedAt: w.clock.now()})
	if !errors.Is(err, catalog.ErrDeleted) {
		t.Fatalf("hold on a deleted incident: %v", err)
	}
}

func TestLegalHold(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	held := w.record(t, day0, 2)
	other := w.record(t, day0, 2)
	w.clock.day(5)
	if err := PlaceHold(ctx, w.cat, w.store, catalog.Hold{Incident: held, Reason: "assault complaint", Reference: "PR-2026-1234", PlacedBy: "admin1", PlacedAt: w.clock.now()}); err != nil {
		t.Fatal(err)
	}
	if err := w.cat.PlaceHold(ctx, catalog.Hold{Incident: held, Reason: "x", Reference: "y", PlacedBy: "z", PlacedAt: w.clock.now()}); !errors.Is(err, catalog.ErrHeld) {
		t.Fatalf("double hold: %v", err)
	}
	for _, d := range []int{29, 400} {
		w.clock.day(d)
		w.sweep(t)
		if !w.exists(t, held) {
			t.Fatalf("held incident gone on day %d", d)
		}
	}
	if w.exists(t, other) {
		t.Fatal("unheld incident survived day 29")
	}
	// The store refuses to delete a held chunk even past its deadline.
	objs, _ := w.cat.LiveObjects(ctx, held)
	if err := w.store.Delete(ctx, objs[0]); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("delete of a held chunk: %v", err)
	}
	if err := ReleaseHold(ctx, w.cat, w.store, held, "admin2", "case closed", w.clock.now()); err != nil {
		t.Fatal(err)
	}
	if err := w.cat.ReleaseHold(ctx, held, "admin2", "again", w.clock.now()); !errors.Is(err, catalog.ErrNotHeld) {
		t.Fatalf("double release: %v", err)
	}
	res := w.sweep(t)
	if w.exists(t, held) || len(res.Incidents) != 1 {
		t.Fatalf("released incident still there after the sweep: %+v", res)
	}
	audit, _ := w.cat.AuditLines(ctx)
	var actions []string
	for _, l := range audit {
		for _, a := range []string{"hold.placed", "hold.released", "retention.deleted"} {
			if strings.Contains(string(l), `"action":"`+a+`"`) {
				actions = append(actions, a)
			}
		}
	}
	if strings.Join(actions, ",") != "hold.placed,retention.deleted,hold.released,retention.deleted" {
		t.Fatalf("audit actions %v", actions)
	}
}

// killingStore deletes like the real store, then "kills" the sweep (cancels
// its context) once n chunks are gone: before any key is destroyed.
type killingStore struct {
	*fs.Store
	n      int
	cancel context.CancelFunc
}

func (k *killingStore) Delete(ctx context.Context, key string) error {
	err := k.Store.Delete(ctx, key)
	if k.n--; k.n == 0 {
		k.cancel()
	}
	return err
}

func TestSweepKilledHalfway(t *testing.T) {
	w := newWorld(t)
	due := w.record(t, day0, 4)
	w.clock.day(10)
	notYet := w.record(t, w.clock.now(), 2)
	held := w.record(t, day0, 2)
	ctx := context.Background()
	PlaceHold(ctx, w.cat, w.store, catalog.Hold{Incident: held, Reason: "r", Reference: "PR-9", PlacedBy: "admin", PlacedAt: w.clock.now()})

	w.clock.day(30)
	kctx, cancel := context.WithCancel(ctx)
	ks := &killingStore{Store: w.store, n: 4, cancel: cancel}
	killed := &Sweeper{Catalog: w.cat, Store: ks, Now: w.clock.now}
	if _, err := killed.Sweep(kctx, false); err == nil {
		t.Fatal("the killed sweep reported success")
	}
	// Chunks gone, key not yet destroyed: never a key destroyed early, and
	// the incident is still recorded as present.
	if in, _ := w.cat.Incident(ctx, due); in.Status == catalog.StatusDeleted {
		t.Fatal("incident shredded by the killed sweep")
	}
	res := w.sweep(t)
	if len(res.Incidents) != 1 || res.Incidents[0].Incident != due {
		t.Fatalf("next sweep: %+v", res)
	}
	keys, _ := w.cat.WrappedKeys(ctx, due)
	for _, k := range keys {
		if len(k) != 0 {
			t.Fatal("key survived the completing sweep")
		}
	}
	if !w.exists(t, notYet) || !w.exists(t, held) {
		t.Fatal("a chunk not yet due or held was touched")
	}
	for _, inc := range []string{notYet, held} {
		if keys, _ := w.cat.WrappedKeys(ctx, inc); len(keys[firstKey(keys)]) == 0 {
			t.Fatalf("%s lost its key", inc)
		}
	}
}

func firstKey(m map[string][]byte) string {
	for k := range m {
		return k
	}
	return ""
}

// BenchmarkSweep: chunks deleted per second on fs (each a real store
// delete of a read-only file plus a catalog update), then the incidents
// shredded. CAMVAULT_BENCH_SWEEP_INCIDENTS × 20 chunks (default 100).
func BenchmarkSweep(b *testing.B) {
	incidents := 100
	if v, err := strconv.Atoi(os.Getenv("CAMVAULT_BENCH_SWEEP_INCIDENTS")); err == nil && v > 0 {
		incidents = v
	}
	const per = 20
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		w := newWorld(b)
		for j := 0; j < incidents; j++ {
			w.record(b, day0.Add(time.Duration(j)*time.Second), per)
		}
		w.clock.day(29)
		start := time.Now()
		if due, err := w.cat.DueChunks(context.Background(), w.clock.now(), 1000); err != nil || len(due) == 0 {
			b.Fatal(err)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds()), "due-query-µs")
		b.StartTimer()
		start = time.Now()
		res, err := w.sw.Sweep(context.Background(), false)
		if err != nil || res.Chunks != incidents*per || len(res.Incidents) != incidents {
			b.Fatalf("sweep: %v, %d chunks", err, res.Chunks)
		}
		b.ReportMetric(float64(res.Chunks)/time.Since(start).Seconds(), "chunks/s")
	}
}

func TestExtendCategory(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	inc := w.record(t, day0, 2)
	w.clock.day(3)
	n, err := Extend(ctx, w.cat, w.store, inc, "complaint", "admin1", "citizen complaint filed", w.clock.now())
	if err != nil || n != 2 {
		t.Fatalf("extend: %d, %v", n, err)
	}
	objs, _ := w.cat.LiveObjects(ctx, inc)
	if until, _, err := w.store.RetainUntil(objs[0]); err != nil || !until.Equal(day0.Add(90*day)) {
		t.Fatalf("store deadline %v %v, want day 90", until, err)
	}
	// Never shortens.
	if n, err := Extend(ctx, w.cat, w.store, inc, "default", "admin1", "back to normal", w.clock.now()); err != nil || n != 0 {
		t.Fatalf("extend to a shorter category: %d chunks moved, %v", n, err)
	}
	if _, err := Extend(ctx, w.cat, w.store, inc, "forever", "admin1", "x", w.clock.now()); err == nil {
		t.Fatal("unknown category accepted")
	}
	for _, d := range []int{29, 89} {
		w.clock.day(d)
		w.sweep(t)
		if !w.exists(t, inc) {
			t.Fatalf("complaint incident gone on day %d", d)
		}
	}
	w.clock.day(91)
	if res := w.sweep(t); len(res.Incidents) != 1 || w.exists(t, inc) {
		t.Fatalf("day 91: %+v", res)
	}
	audit := w.auditAfterSetUp(t)
	if len(audit) == 0 || !strings.Contains(string(audit[0]), `"action":"retention.extended"`) || !strings.Contains(string(audit[0]), "citizen complaint") {
		t.Fatalf("audit: %s", audit)
	}
}

// auditAfterSetUp is the audit trail without the set-up's own records
// (the camera's registration).
func (w *world) auditAfterSetUp(t *testing.T) [][]byte {
	t.Helper()
	lines, err := w.cat.AuditLines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, l := range lines {
		if !strings.Contains(string(l), `"action":"camera.add"`) {
			out = append(out, l)
		}
	}
	return out
}

// TestLeftoversDeletedOnTime: what the write path left in the store
// without a chunk row (an object quarantined at a restart, one put whose
// commit never happened, one the catalog has no trace of) is reported and
// deleted at its deadline like any chunk: never earlier, never under a
// hold; the audit trail's anchored heads are never touched.
func TestLeftoversDeletedOnTime(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.sw.ScanEvery = -1
	inc := w.record(t, day0, 2)
	held := w.record(t, day0, 1)
	deadline := day0.Add(28 * day)
	put := func(key string, until time.Time) {
		t.Helper()
		if err := w.store.Put(ctx, key, []byte("sealed bytes"), until); err != nil {
			t.Fatal(err)
		}
	}
	ses := strings.Split(must(w.cat.LiveObjects(ctx, inc))[0], "/")[1]
	intent := func(seq uint64) string {
		t.Helper()
		ch := catalog.Chunk{Incident: inc, Session: ses, Track: chunk.TrackOriginal, Seq: seq, Wall: day0, RetainUntil: deadline,
			CipherSize: 12, PlainSHA256: "p", CipherSHA256: "c"}
		ch.Object = chunk.ObjectKey(chunk.Header{Incident: inc, Session: ses, Track: chunk.TrackOriginal, Seq: seq})
		if err := w.cat.RecordIntent(ctx, ch, day0); err != nil {
			t.Fatal(err)
		}
		put(ch.Object, deadline)
		return ch.Object
	}
	quarantined, pending := intent(5), intent(6)
	if err := w.cat.QuarantineIntent(ctx, quarantined, "session has ended"); err != nil {
		t.Fatal(err)
	}
	stray := inc + "/" + ses + "/original/00000009.chunk"
	put(stray, deadline)
	strayHeld := held + "/ses-x/original/00000001.chunk"
	put(strayHeld, deadline)
	if err := PlaceHold(ctx, w.cat, w.store, catalog.Hold{Incident: held, Reason: "r", Reference: "PR-1", PlacedBy: "a", PlacedAt: day0}); err != nil {
		t.Fatal(err)
	}
	head := "audit/heads/000000000000.json"
	put(head, day0.Add(day))
	present := func(key string) bool {
		rc, err := w.store.Get(ctx, key)
		if err == nil {
			rc.Close()
		}
		return err == nil
	}

	w.clock.day(27)
	res := w.sweep(t)
	if res.Intents != 0 || res.UnaccountedDeleted != 0 || res.Scanned != 8 || len(res.Unaccounted) != 2 ||
		!slices.Contains(res.Unaccounted, stray) || !slices.Contains(res.Unaccounted, strayHeld) {
		t.Fatalf("day 27: %+v", res)
	}
	for _, k := range []string{quarantined, pending, stray, strayHeld, head} {
		if !present(k) {
			t.Fatalf("day 27: %s deleted before its deadline", k)
		}
	}
	w.clock.day(29)
	if dry, err := w.sw.Sweep(ctx, true); err != nil || dry.Intents != 2 || len(dry.Unaccounted) != 2 || dry.UnaccountedDeleted != 0 || !present(stray) {
		t.Fatalf("dry run: %+v (%v)", dry, err)
	}
	res = w.sweep(t)
	if res.Chunks != 2 || res.Intents != 2 || res.UnaccountedDeleted != 1 || len(res.Incidents) != 1 || res.Incidents[0].Incident != inc {
		t.Fatalf("day 29: %+v", res)
	}
	for _, k := range []string{quarantined, pending, stray} {
		if present(k) {
			t.Fatalf("day 29: %s kept past its deadline", k)
		}
	}
	if !present(strayHeld) || !present(head) {
		t.Fatalf("day 29: held leftover kept %v, audit head kept %v", present(strayHeld), present(head))
	}
	if left, _ := w.cat.Intents(ctx); len(left) != 0 {
		t.Fatalf("intents left: %+v", left)
	}
	// Without ScanEvery the store is not listed (serve scans daily).
	w.sw.ScanEvery = 0
	if res := w.sweep(t); res.Scanned != 0 {
		t.Fatalf("scanned %d objects without ScanEvery", res.Scanned)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
