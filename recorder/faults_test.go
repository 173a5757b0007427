package recorder

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"camvault/camera"
	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/ingest"
	"camvault/stages/commit"
	"camvault/stages/store"
	"camvault/storage"
	"camvault/storage/faultstore"
	"camvault/storage/fs"
)

// faultCatalog is the real catalog at the commit stage's seam with the
// programme's Catalog faults injected before each write.
type faultCatalog struct {
	commit.Catalog
	f *faultstore.Faults
}

func (c *faultCatalog) CommitChunk(ctx context.Context, ch catalog.Chunk) (manifest.Record, error) {
	if err := c.f.Inject(ctx, faultstore.Catalog); err != nil {
		return manifest.Record{}, err
	}
	return c.Catalog.CommitChunk(ctx, ch)
}

func (c *faultCatalog) AppendRecord(ctx context.Context, r manifest.Record) (manifest.Record, error) {
	if err := c.f.Inject(ctx, faultstore.Catalog); err != nil {
		return manifest.Record{}, err
	}
	return c.Catalog.AppendRecord(ctx, r)
}

func (c *faultCatalog) EndSession(ctx context.Context, incident, session string, now time.Time, status, note string) (manifest.Record, error) {
	if err := c.f.Inject(ctx, faultstore.Catalog); err != nil {
		return manifest.Record{}, err
	}
	return c.Catalog.EndSession(ctx, incident, session, now, status, note)
}

// intentOp is the store stage's intent, a catalog write of its own.
const intentOp faultstore.Op = "intent"

// faultIntents is the real catalog at the store stage's intent seam with
// the programme's intentOp faults injected.
type faultIntents struct {
	store.Intents
	f *faultstore.Faults
}

func (c *faultIntents) RecordIntent(ctx context.Context, ch catalog.Chunk, now time.Time) error {
	if err := c.f.Inject(ctx, intentOp); err != nil {
		return err
	}
	return c.Intents.RecordIntent(ctx, ch, now)
}

// newFaultRig is a rig whose fs store writes and syncs through f and whose
// recorder's store and commit-stage catalog have f's faults in front.
func newFaultRig(t *testing.T, cfg Config, f *faultstore.Faults, camera string) *rig {
	t.Helper()
	r := newRigWithFS(t, cfg, []fs.Option{fs.WithFileOps(fs.FileOps{Write: f.WriteFile, Sync: f.SyncFile})},
		func(st *fs.Store) storage.ChunkStore { return faultstore.Wrap(st, f) }, camera)
	// Before the first item: the commit goroutine reads the field only
	// for an item, which the source's channel hands over after this.
	r.rec.committer.Catalog = &faultCatalog{Catalog: r.cat, f: f}
	r.rec.writer.Intents = &faultIntents{Intents: r.cat, f: f}
	r.rec.committer.Backoff.Base = 5 * time.Millisecond
	r.rec.writer.Backoff.Base = 5 * time.Millisecond
	return r
}

// metric reads the value of the series name{stage=stage} ("" for one
// without labels) from the rig's registry.
func (r *rig) metric(t *testing.T, name, stage string) float64 {
	t.Helper()
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			if stage != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == "stage" && l.GetValue() == stage
			}) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// checkComplete: every original seq from 0 to the last is in the
// manifest exactly once, as a chunk or as a gap with its time range, in
// order; the catalog's rows are exactly the store's chunk objects. It
// returns the seqs recorded as gaps.
func checkComplete(t *testing.T, r *rig, o *opened) (gaps []uint64) {
	t.Helper()
	seen := map[uint64]string{}
	var order []uint64
	for _, rec := range o.records {
		if rec.Track != chunk.TrackOriginal || (rec.Kind != manifest.KindChunk && rec.Kind != manifest.KindGap) {
			continue
		}
		if prev, dup := seen[rec.Seq]; dup {
			t.Fatalf("seq %d twice in the manifest: %s and %s", rec.Seq, prev, rec.Kind)
		}
		seen[rec.Seq] = rec.Kind
		order = append(order, rec.Seq)
		if rec.Kind == manifest.KindGap {
			if rec.FromWall == nil || rec.ToWall == nil || !rec.ToWall.After(*rec.FromWall) || rec.EndNS <= rec.StartNS {
				t.Fatalf("gap %d without its range: %+v", rec.Seq, rec)
			}
			gaps = append(gaps, rec.Seq)
		}
	}
	for i, seq := range order {
		if seq != uint64(i) {
			t.Fatalf("manifest seqs %v: not 0..%d in order", order, len(order)-1)
		}
	}
	rows, err := r.cat.LiveObjects(r.ctx, o.id)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := r.st.List(r.ctx, o.id+"/")
	if err != nil {
		t.Fatal(err)
	}
	stored = slices.DeleteFunc(stored, func(k string) bool { return !strings.HasSuffix(k, ".chunk") })
	slices.Sort(rows)
	if !slices.Equal(rows, stored) {
		t.Fatalf("catalog rows %v\nstore objects %v", rows, stored)
	}
	if len(rows) != len(order)-len(gaps) {
		t.Fatalf("%d rows, %d chunk records", len(rows), len(order)-len(gaps))
	}
	return gaps
}

// TestRecorderRidesOutStoreAndCatalogFaults: a stream recorded while the
// real fs store refuses puts, cuts writes off midway, fails fsyncs and
// loses the answer of a put that landed, and while the real catalog
// refuses (and stalls) commits at the commit stage and intents at the
// store stage, comes out whole once the faults
// clear: every segment stored exactly once, committed in order, no gap,
// the catalog's rows the store's objects, and the incident verifies; the
// store and commit retry metrics count what was ridden out.
func TestRecorderRidesOutStoreAndCatalogFaults(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 12)
	f := faultstore.New(7)
	r := newFaultRig(t, Config{}, f, "cam-f")
	f.Set(faultstore.Put, faultstore.Fault{Prob: 0.3, Times: 3})
	f.Set(faultstore.Write, faultstore.Fault{Skip: 2, After: 4096, Times: 2})
	f.Set(faultstore.Sync, faultstore.Fault{Skip: 3, Times: 2})
	f.Set(faultstore.Catalog, faultstore.Fault{Skip: 1, Prob: 0.5, Times: 4, Stall: 50 * time.Millisecond})
	f.Set(intentOp, faultstore.Fault{Skip: 2, Times: 2})
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-f", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range clip.frames {
		if i == 200 {
			f.Set(faultstore.Put, faultstore.Fault{Landed: true, Times: 1})
		}
		if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []faultstore.Op{faultstore.Put, faultstore.Write, faultstore.Sync, faultstore.Catalog, intentOp} {
		if f.Hits(op) == 0 {
			t.Errorf("no %s fault was injected", op)
		}
	}
	o := r.open(t, "cam-f") // verifies
	if gaps := checkComplete(t, r, o); len(gaps) > 0 {
		t.Fatalf("gaps %v: a fault that cleared cost footage", gaps)
	}
	if n := o.originals(); n != 6 {
		t.Fatalf("%d media chunks, want 6", n)
	}
	if v := r.metric(t, "camvault_store_put_retries_total", ""); v < 4 {
		t.Errorf("store retries %v", v)
	}
	if v := r.metric(t, "camvault_commit_retries_total", ""); v < 1 {
		t.Errorf("commit retries %v", v)
	}
	if v := r.metric(t, "camvault_store_put_failures_total", ""); v != 0 {
		t.Errorf("%v chunks given up", v)
	}
}

// TestRecorderBoundedWhileStoreHangs: while every put hangs, what the
// recorder holds stays within its bound, Queue×3 + SealWorkers +
// StoreWorkers + 1 items, the store stage holds at most StoreWorkers
// puts, and the camera's reader is never held up longer than SubmitWait:
// the segments the pipeline has no room for are dropped, each recorded
// as a gap with its range once there is room, and the backpressure shows
// in the metrics. Once the store answers, everything accepted is stored
// exactly once and the incident verifies.
func TestRecorderBoundedWhileStoreHangs(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 24)
	f := faultstore.New(1)
	cfg := Config{Queue: 1, SealWorkers: 1, StoreWorkers: 2, SubmitWait: 100 * time.Millisecond}
	r := newFaultRig(t, cfg, f, "cam-b")
	bound := 3*cfg.Queue + cfg.SealWorkers + cfg.StoreWorkers + 1
	release := f.Block(faultstore.Put)
	defer release()
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-b", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	var slowest time.Duration
	peak := 0.0
	for i := range clip.frames {
		t0 := time.Now()
		if err := sess.WriteAccessUnit(clip.unit(i, t0)); err != nil {
			t.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
		peak = max(peak, r.metric(t, "camvault_pipeline_in_flight", "segments"))
	}
	if slowest > cfg.SubmitWait+500*time.Millisecond {
		t.Errorf("the reader was held up %v, SubmitWait is %v", slowest, cfg.SubmitWait)
	}
	if peak > float64(bound) {
		t.Errorf("%v items in flight, bound %d", peak, bound)
	}
	if now, most := f.Waiting(faultstore.Put); most > cfg.StoreWorkers || now == 0 {
		t.Errorf("puts hanging: %d now, %d at most; %d store workers", now, most, cfg.StoreWorkers)
	}
	if v := r.metric(t, "camvault_pipeline_blocked_seconds_total", "segments"); v < cfg.SubmitWait.Seconds() {
		t.Errorf("blocked %v s: the backpressure does not show", v)
	}
	dropped := r.metric(t, "camvault_segments_dropped_total", "")
	if dropped == 0 {
		t.Error("no segment dropped while the store hung")
	}
	release()
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	o := r.open(t, "cam-b")
	gaps := checkComplete(t, r, o)
	if float64(len(gaps)) != dropped || len(gaps) == 0 {
		t.Fatalf("%d gap records, %v segments dropped", len(gaps), dropped)
	}
	if o.originals()+len(gaps) != 12 {
		t.Fatalf("%d chunks and %d gaps for 12 segments", o.originals(), len(gaps))
	}
	for _, rec := range o.records {
		if rec.Kind == manifest.KindGap && !strings.Contains(rec.Note, "no room in the pipeline") {
			t.Fatalf("gap note %q", rec.Note)
		}
	}
	t.Logf("bound %d items; peak in flight %v; %v of 12 segments dropped; reader held up at most %v", bound, peak, dropped, slowest)
}
