package recorder

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asticode/go-astiav"

	"camvault/camera"
	"camvault/codec"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/ingest"
	"camvault/media"
	"camvault/stages/transcode"
)

// x264's statistics and the decoder's warnings would bury the test output.
func init() { astiav.SetLogLevel(astiav.LogLevelError) }

// waitJobs waits until the transcode stage has accounted for n jobs
// (made, failed or shed).
func waitJobs(t testing.TB, r *rig, n int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		got := metricSum(t, r.reg, "camvault_transcode_jobs_total") + metricSum(t, r.reg, "camvault_transcode_errors_total") +
			metricSum(t, r.reg, "camvault_transcode_shed_total")
		if int(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d transcode jobs accounted for after %v", got, n, within)
		}
	}
}

// concat joins a track's init and media chunks in seq order.
func (o *opened) concat(track string, upTo int) []byte {
	var b []byte
	for seq := 0; seq <= upTo; seq++ {
		b = append(b, o.plain[fmt.Sprintf("%s/%d", track, seq)]...)
	}
	return b
}

func ffprobe(t testing.TB, file string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", append([]string{"-v", "error"}, append(args, "-of", "csv=p=0", file)...)...).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	return strings.TrimSpace(string(out))
}

func writeTemp(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProxyAndThumbnailsReal records a 720p H.264 session through the
// real codec.ProxyRenderer: every original chunk gets a proxy chunk and a
// thumbnail; the decrypted proxy is H.264 640×360 with the original's
// pictures at the original's times; every thumbnail is a 640×360 JPEG.
func TestProxyAndThumbnailsReal(t *testing.T) {
	clip := makeH264Clip(t, "1280x720", 6)
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Queue: 8}}, "cam-p")
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-p", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range clip.frames {
		if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	waitJobs(t, r, 2*2, time.Minute) // segments 1 and 2 are cut; 3 is cut at the end
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}

	o := r.open(t, "cam-p")
	n := o.originals()
	if n != 3 || len(o.gaps) != 0 {
		t.Fatalf("%d original chunks, derived gaps %v", n, o.gaps)
	}
	o.checkDerivedAlignment(t)

	orig := writeTemp(t, "original.mp4", o.concat(chunk.TrackOriginal, n))
	proxy := writeTemp(t, "proxy.mp4", o.concat(chunk.TrackProxy, n))
	if got := ffprobe(t, proxy, "-show_entries", "stream=codec_name,width,height"); got != "h264,640,360" {
		t.Fatalf("proxy streams %q", got)
	}
	dur := func(f string) float64 {
		d, err := strconv.ParseFloat(ffprobe(t, f, "-show_entries", "format=duration"), 64)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if po, pp := dur(orig), dur(proxy); math.Abs(po-pp) > 2 || pp < 5 {
		t.Fatalf("proxy lasts %.3f s, the original %.3f s", pp, po)
	}
	// Picture for picture at the original's times: proxy chunk N covers
	// the time of original chunk N.
	pts := func(f string) []string {
		l := strings.Split(ffprobe(t, f, "-select_streams", "v:0", "-show_entries", "packet=pts_time"), "\n")
		slices.Sort(l)
		return l
	}
	if po, pp := pts(orig), pts(proxy); len(pp) != len(clip.frames) || !slices.Equal(po, pp) {
		t.Fatalf("proxy has %d pictures, the original %d, times equal %v", len(pp), len(po), slices.Equal(po, pp))
	}
	for seq := 1; seq <= n; seq++ {
		jpeg := o.plain[fmt.Sprintf("thumb/%d", seq)]
		if !bytes.HasPrefix(jpeg, []byte{0xff, 0xd8, 0xff}) {
			t.Fatalf("thumb/%d is not a JPEG", seq)
		}
		if got := ffprobe(t, writeTemp(t, "thumb.jpg", jpeg), "-show_entries", "stream=codec_name,width,height"); got != "mjpeg,640,360" {
			t.Fatalf("thumb/%d: %q", seq, got)
		}
	}
}

// truncateLastNAL cuts a picture's last NAL unit to half its length.
func truncateLastNAL(au [][]byte) [][]byte {
	out := slices.Clone(au)
	last := out[len(out)-1]
	out[len(out)-1] = last[:len(last)/2]
	return out
}

// TestCorruptFrameDerivedGap: a truncated NAL unit mid-segment makes that
// segment's proxy a gap (the thumbnail, from the intact keyframe, is
// made); a truncated keyframe makes both gaps; the originals, damage
// included, are stored and verify, and the other segments get their
// renditions.
func TestCorruptFrameDerivedGap(t *testing.T) {
	clip := makeH264Clip(t, "640x360", 8)
	frames := slices.Clone(clip.frames)
	frames[60+30] = truncateLastNAL(frames[60+30]) // segment 2, mid-GOP
	frames[120] = truncateLastNAL(frames[120])     // segment 3's keyframe
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Queue: 8}}, "cam-c")
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-c", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		au := clip.unit(i, time.Now())
		au.NALUs = f
		if err := sess.WriteAccessUnit(au); err != nil {
			t.Fatal(err)
		}
	}
	waitJobs(t, r, 3*2, time.Minute)
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	o := r.open(t, "cam-c")
	if n := o.originals(); n != 4 {
		t.Fatalf("%d original chunks", n)
	}
	o.checkDerivedAlignment(t)
	wantGaps := []string{"proxy/2", "proxy/3", "thumb/3"}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range o.gaps {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(got, wantGaps) {
		t.Fatalf("derived gaps %v, want %v", o.gaps, wantGaps)
	}
	for k, note := range o.gaps {
		if !strings.HasPrefix(note, "derived work failed: ") || !strings.Contains(note, codec.ErrDecode.Error()) {
			t.Fatalf("gap %s: %q", k, note)
		}
	}
	// The originals carry every picture, the damaged ones as received.
	samples := int64(0)
	for _, rec := range o.records {
		if rec.Kind == manifest.KindChunk && rec.Track == chunk.TrackOriginal {
			samples += rec.Samples
		}
	}
	if samples != int64(len(frames)) {
		t.Fatalf("originals hold %d pictures, %d were sent", samples, len(frames))
	}
	if !bytes.Contains(o.plain["original/2"], frames[90][len(frames[90])-1]) {
		t.Fatal("the damaged picture is not stored as received")
	}
	checkShedAlerts(t, r, map[string]int{o.id: 0})
	if e := metricSum(t, r.reg, "camvault_transcode_errors_total"); e != 3 {
		t.Fatalf("errors_total %v", e)
	}
}

// TestLagTolerance streams ten 720p cameras in real time into one
// recorder while a single transcode worker makes real proxies: the
// originals lose nothing and are durable within a segment + 1 s of their
// first frame arriving, while derived work that cannot keep up is shed
// into gap records, with exactly one transcode.shed alert per incident
// that had any shed.
func TestLagTolerance(t *testing.T) {
	const cams, seconds = 10, 8
	clip := makeH264Clip(t, "1280x720", seconds)
	names := make([]string, cams)
	for i := range names {
		names[i] = fmt.Sprintf("cam-%02d", i)
	}
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Workers: 1, Queue: 2}}, names...)
	var wg sync.WaitGroup
	errs := make(chan error, cams)
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Millisecond) // cameras go live at different times
			sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: name, Officer: "officer"}, clip.tracks(), "test")
			if err != nil {
				errs <- err
				return
			}
			start := time.Now()
			for i := range clip.frames {
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / 30)))
				if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
					errs <- fmt.Errorf("%s picture %d: %w", name, i, err)
					return
				}
			}
			sess.End(ingest.EndTeardown, nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}

	incidents := map[string]int{}
	made, shed := 0, 0
	for _, name := range names {
		o := r.open(t, name)
		o.checkDerivedAlignment(t)
		incidents[o.id] = 0
		samples := int64(0)
		for _, rec := range o.records {
			if rec.Kind == manifest.KindChunk && rec.Track == chunk.TrackOriginal {
				samples += rec.Samples
			}
		}
		if samples != int64(len(clip.frames)) {
			t.Fatalf("%s: %d of %d pictures durable", name, samples, len(clip.frames))
		}
		for _, note := range o.gaps {
			if !strings.HasPrefix(note, "derived work shed: ") {
				t.Fatalf("%s: derived gap %q", name, note)
			}
			shed++
			incidents[o.id] = 1 // one alert for an incident with any shed work, whatever its count
		}
		made += o.report.Derived
	}
	if shed == 0 || made == 0 {
		t.Fatalf("derived chunks made %d, shed %d: want both under this load", made, shed)
	}
	checkShedAlerts(t, r, incidents)

	// Ingest-to-durable of every original media chunk, from the
	// recorder's histogram: within the segment (2 s) + 1 s.
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "camvault_ingest_to_durable_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		if want := uint64(cams * seconds / 2); h.GetSampleCount() != want {
			t.Fatalf("%d latency samples, want %d", h.GetSampleCount(), want)
		}
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 3 && b.GetCumulativeCount() != h.GetSampleCount() {
				t.Fatalf("%d of %d original chunks took over 3 s to become durable", h.GetSampleCount()-b.GetCumulativeCount(), h.GetSampleCount())
			}
		}
		t.Logf("originals: %d chunks, mean ingest-to-durable %.2f s; derived: %d chunks made, %d shed",
			h.GetSampleCount(), h.GetSampleSum()/float64(h.GetSampleCount()), made, shed)
		return
	}
	t.Fatal("no ingest-to-durable histogram")
}

// TestProxyOfVP8Session: a VP8+Opus session (WebM originals) gets H.264
// proxies and JPEG thumbnails too; the proxy keeps the 320×240 picture
// (never enlarged) and the original's picture times.
func TestProxyOfVP8Session(t *testing.T) {
	c := makeVP8Clip(t)
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Queue: 8}}, "cam-v")
	tracks := []media.Track{
		{ID: 0, Codec: media.CodecVP8, ClockRate: 90000},
		{ID: 1, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 1},
	}
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-v", Officer: "officer"}, tracks, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, au := range c.units() {
		if err := sess.WriteAccessUnit(au); err != nil {
			t.Fatalf("access unit %d: %v", i, err)
		}
	}
	waitJobs(t, r, 2*2, time.Minute)
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	o := r.open(t, "cam-v")
	n := o.originals()
	if n != clipSeconds/2 || len(o.gaps) != 0 {
		t.Fatalf("%d original chunks, derived gaps %v", n, o.gaps)
	}
	o.checkDerivedAlignment(t)
	proxy := writeTemp(t, "proxy.mp4", o.concat(chunk.TrackProxy, n))
	if got := ffprobe(t, proxy, "-show_entries", "stream=codec_name,width,height"); got != "h264,320,240" {
		t.Fatalf("proxy streams %q", got)
	}
	if got := strings.Count(ffprobe(t, proxy, "-select_streams", "v:0", "-show_entries", "packet=pts_time"), "\n") + 1; got != len(c.video) {
		t.Fatalf("proxy has %d pictures, the camera sent %d", got, len(c.video))
	}
	if h := o.headers["thumb/1"]; h.Codec != transcode.ThumbCodec || !bytes.HasPrefix(o.plain["thumb/1"], []byte{0xff, 0xd8}) {
		t.Fatalf("thumb/1: %+v", h)
	}
}
