package recorder

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"camvault/camera"
	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/ingest"
	"camvault/storage"
	"camvault/storage/fs"
)

// flakyStore refuses its first fails writes, as an object store does
// while it is unreachable.
type flakyStore struct {
	*fs.Store
	fails atomic.Int32
}

func (f *flakyStore) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	if f.fails.Add(-1) >= 0 {
		return errors.New("chunk store unreachable")
	}
	return f.Store.Put(ctx, key, data, retainUntil)
}

// TestStorageDegradedAlert: writes the chunk store refuses at first are
// retried, so nothing is lost, and the backoffice gets one
// storage.degraded alert for the incident, naming the object and error.
func TestStorageDegradedAlert(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 4)
	r := newRigWithStore(t, Config{}, func(st *fs.Store) storage.ChunkStore {
		f := &flakyStore{Store: st}
		f.fails.Store(3)
		return f
	}, "cam-s")
	recordSession(t, r, camera.Camera{ID: "cam-s", Officer: "officer"}, clip, len(clip.frames), ingest.EndTeardown)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	o := r.open(t, "cam-s") // verifies: every chunk is there
	if len(o.plain) < 2 {
		t.Fatalf("%d chunks stored", len(o.plain))
	}
	for _, rec := range o.records {
		if rec.Kind == manifest.KindGap {
			t.Fatalf("a retried write was lost: %+v", rec)
		}
	}
	alerts, err := r.cat.AlertsAfter(r.ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var degraded []catalog.Alert
	for _, a := range alerts {
		if a.Type == AlertStorageDegraded {
			degraded = append(degraded, a)
		}
	}
	if len(degraded) != 1 || degraded[0].Incident != o.id || degraded[0].Data["error"] != "chunk store unreachable" || degraded[0].Data["object"] == "" {
		t.Fatalf("storage.degraded alerts: %+v, want one for %s", degraded, o.id)
	}
}
