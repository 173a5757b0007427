package recorder

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"camvault/camera"
	"camvault/format/manifest"
	"camvault/ingest"
)

// fakeSpace is a free-space monitor the test sets: low refuses new
// incidents, full keeps chunks out of the store.
type fakeSpace struct {
	low, full atomic.Bool
}

var errTestFull = errors.New("storage full: test")

func (f *fakeSpace) Accepting() error {
	if f.low.Load() {
		return errTestFull
	}
	return nil
}

func (f *fakeSpace) Writable() error {
	if f.full.Load() {
		return errTestFull
	}
	return nil
}

func (f *fakeSpace) Exhausted(error) bool { return false }

// TestShortOfStorage: below the threshold a camera without an incident to
// continue is refused (Admit and StartSession), while one reconnecting
// within the grace window continues its incident; with the disk full its
// segments are not stored and each is a gap record with its seq and time
// range, and the session still ends, so the incident verifies.
func TestShortOfStorage(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 4)
	space := &fakeSpace{}
	r := newRig(t, Config{Space: space}, "cam-live", "cam-new")
	live := camera.Camera{ID: "cam-live", Officer: "officer"}
	recordSession(t, r, live, clip, 30, ingest.EndInterrupted)

	space.low.Store(true)
	space.full.Store(true)
	if err := r.rec.Admit(r.ctx, camera.Camera{ID: "cam-new"}); !errors.Is(err, errTestFull) {
		t.Fatalf("Admit of a new incident below the threshold: %v", err)
	}
	if _, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-new"}, clip.tracks(), "test"); !errors.Is(err, errTestFull) {
		t.Fatalf("StartSession of a new incident below the threshold: %v", err)
	}
	if err := r.rec.Admit(r.ctx, live); err != nil {
		t.Fatalf("a camera continuing its incident was refused: %v", err)
	}
	recordSession(t, r, live, clip, len(clip.frames), ingest.EndTeardown)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	incs, err := r.cat.Incidents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range incs {
		if in.Camera == "cam-new" {
			t.Fatalf("the refused camera has an incident: %+v", in)
		}
	}
	o := r.open(t, "cam-live") // verifies
	sessions, lost := 0, 0
	for _, rec := range o.records {
		switch {
		case rec.Kind == manifest.KindSession:
			sessions++
		case rec.Kind == manifest.KindGap && strings.Contains(rec.Note, "storage full"):
			lost++
			if rec.FromWall == nil || rec.ToWall == nil || rec.EndNS < rec.StartNS || rec.Session == "" {
				t.Errorf("gap of a segment kept out of a full disk without its range: %+v", rec)
			}
		}
	}
	if sessions != 2 || lost < 2 {
		t.Fatalf("%d sessions, %d segments recorded as lost to the full disk; want 2 and at least 2\n%+v", sessions, lost, o.records)
	}
}

// recordSession records the clip's first frames as one session of cam,
// ended how.
func recordSession(t *testing.T, r *rig, cam camera.Camera, clip *h264Clip, frames int, how string) {
	t.Helper()
	sess, err := r.rec.StartSession(r.ctx, cam, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range frames {
		if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	sess.End(how, nil)
}
