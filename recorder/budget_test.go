package recorder

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"camvault/camera"
	"camvault/ingest"
)

// burningRenderer stands in for the proxy renderer: each call burns
// 30 ms of its thread's CPU (what the budget measures) and is counted by
// the original segment's sequence number.
type burningRenderer struct {
	mu    sync.Mutex
	calls map[string]int // "kind seq"
}

func (b *burningRenderer) burn(kind string, seg []byte) {
	b.mu.Lock()
	if b.calls == nil {
		b.calls = map[string]int{}
	}
	b.calls[fmt.Sprintf("%s %d", kind, mfhdSeq(seg))]++
	b.mu.Unlock()
	thread := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for start := thread(); thread()-start < 30*time.Millisecond; {
	}
}

func (b *burningRenderer) Proxy(_ context.Context, _, seg []byte) ([]byte, []byte, error) {
	b.burn("proxy", seg)
	return []byte("proxy init"), fakeDigest("proxy", seg), nil
}

func (b *burningRenderer) Thumbnail(_ context.Context, _, seg []byte) ([]byte, error) {
	b.burn("thumb", seg)
	return fakeDigest("jpeg", seg), nil
}

// TestDerivedWorkOverBudget records a session whose derived work far
// exceeds a CPU budget of a thousandth of a core: what the budget pays for
// is made, everything else is shed as gap records naming the budget (one
// transcode.shed alert), no shed segment ever reaches the renderer, the
// originals are all kept, and the incident verifies.
func TestDerivedWorkOverBudget(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 12)
	f := &burningRenderer{}
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Workers: 1, CPU: 0.001, Renderer: f}}, "cam-b")
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-b", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range clip.frames {
		if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	o := r.open(t, "cam-b")
	o.checkDerivedAlignment(t)
	originals, shed := 0, 0
	for k := range o.plain {
		if strings.HasPrefix(k, "original/") && k != "original/0" {
			originals++
		}
	}
	if originals < 5 {
		t.Fatalf("%d original media chunks, want every one of the clip's (≥5)", originals)
	}
	for seq := 1; seq <= originals; seq++ {
		for _, track := range []string{"thumb", "proxy"} {
			k := fmt.Sprintf("%s/%d", track, seq)
			_, made := o.plain[k]
			note, gap := o.gaps[k]
			calls := f.calls[fmt.Sprintf("%s %d", track, seq)]
			switch {
			case made && !gap && calls == 1:
			case gap && !made && calls == 0 && note == "derived work shed: over the transcode CPU budget":
				shed++
			default:
				t.Fatalf("%s: made %v, gap %q, rendered %d times", k, made, note, calls)
			}
		}
	}
	// The bucket holds 0.01 CPU-s: one job at most runs on its credit.
	if shed < 2*originals-1 {
		t.Fatalf("%d of %d renditions shed over a budget that pays for one", shed, 2*originals)
	}
	checkShedAlerts(t, r, map[string]int{o.id: 1})
	// Only the segments that got a rendition were copied for derived work.
	want := 0
	for seq := 1; seq <= originals; seq++ {
		_, thumb := o.plain[fmt.Sprintf("thumb/%d", seq)]
		_, proxy := o.plain[fmt.Sprintf("proxy/%d", seq)]
		if thumb || proxy {
			want += len(o.plain[fmt.Sprintf("original/%d", seq)])
		}
	}
	if got := metricSum(t, r.reg, "camvault_transcode_copied_bytes_total"); got != float64(want) {
		t.Fatalf("%v bytes copied for derived work, want %d: those of the segments rendered, no more", got, want)
	}
}
