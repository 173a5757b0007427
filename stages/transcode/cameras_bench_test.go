package transcode

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"camvault/codec"
	"camvault/format/chunk"
	"camvault/internal/testenv"
	"camvault/media"
	"camvault/stages/segment"
)

// benchSegments encodes a w×h, 30 fps H.264 camera clip with the ffmpeg
// CLI (an IDR every 2 s, no B-frames, 4 Mbit/s of a noisy test pattern,
// so decoding costs what a real camera's does) and cuts it the way the
// recorder does: an fMP4 init and 2 s media segments.
func benchSegments(b *testing.B, w, h, seconds int) (init []byte, segs [][]byte) {
	b.Helper()
	testenv.Require(b, "ffmpeg")
	path := filepath.Join(b.TempDir(), "cam.h264")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30,noise=alls=12:allf=t", w, h), "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "0",
		"-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M", "-pix_fmt", "yuv420p", "-f", "h264", path).CombinedOutput()
	if err != nil {
		b.Fatalf("ffmpeg: %v: %s", err, out)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(raw); err != nil {
		b.Fatal(err)
	}
	track := media.Track{Codec: media.CodecH264, ClockRate: 90000}
	var pictures [][][]byte
	var au [][]byte
	for _, n := range nalus {
		typ := h264.NALUType(n[0] & 0x1f)
		switch typ {
		case h264.NALUTypeSPS:
			track.SPS = n
		case h264.NALUTypePPS:
			track.PPS = n
		}
		au = append(au, n)
		if typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR {
			pictures, au = append(pictures, au), nil
		}
	}
	sg, err := segment.New([]media.Track{track}, segment.Config{Target: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if init, err = sg.Init(); err != nil {
		b.Fatal(err)
	}
	for i, p := range pictures {
		typ := h264.NALUType(p[len(p)-1][0] & 0x1f)
		seg, err := sg.Push(&media.AccessUnit{PTS: int64(i) * 3000, DTS: int64(i) * 3000, Key: typ == h264.NALUTypeIDR, NALUs: p, Received: time.Now()})
		if err != nil {
			b.Fatal(err)
		}
		if seg != nil {
			segs = append(segs, append([]byte(nil), seg.Data...))
		}
	}
	if len(segs) < 2 {
		b.Fatalf("%d segments", len(segs))
	}
	return init, segs
}

// camerasRun is what the stage made of n real-time cameras.
type camerasRun struct {
	offered, made, shed [2]atomic.Int64 // by Kind
	busy                atomic.Int64    // nanoseconds workers spent on proxies
	cpu                 float64         // CPU-seconds the stage measured on its threads
}

func (r *camerasRun) accounted() int64 {
	return r.made[Thumb].Load() + r.made[Proxy].Load() + r.shed[Thumb].Load() + r.shed[Proxy].Load()
}

// runCameras offers the stage what n cameras recording in real time
// offer it: every 2 s per camera (phases spread at random) a thumbnail
// and a proxy job of one segment, for d; then closes the stage.
func runCameras(b *testing.B, n int, d time.Duration, init []byte, segs [][]byte) *camerasRun {
	return runCamerasWith(b, Config{}, codec.ProxyConfig{}, n, d, init, segs)
}

// runCamerasWith is runCameras with the stage's and the renderer's
// configuration.
func runCamerasWith(b *testing.B, cfg Config, pc codec.ProxyConfig, n int, d time.Duration, init []byte, segs [][]byte) *camerasRun {
	st, err := New(cfg, codec.NewProxyRenderer(pc), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	res := &camerasRun{}
	var wg sync.WaitGroup
	start := time.Now()
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			phase := time.Duration(rand.Int64N(int64(2 * time.Second)))
			for k := 0; ; k++ {
				at := phase + time.Duration(k)*2*time.Second
				if at >= d {
					return
				}
				time.Sleep(time.Until(start.Add(at)))
				seg := segs[(k+c)%len(segs)]
				for _, kind := range []Kind{Thumb, Proxy} {
					res.offered[kind].Add(1)
					t0 := time.Now()
					err := st.TrySubmit(&Job{Kind: kind, Group: strconv.Itoa(c), Init: init, Segment: seg, Done: func(r Result) {
						res.result(b, kind, r, t0)
					}})
					if err != nil {
						res.shed[kind].Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.settle(b, st)
	return res
}

func (res *camerasRun) result(b *testing.B, kind Kind, r Result, t0 time.Time) {
	switch {
	case r.Err == nil:
		res.made[kind].Add(1)
		if kind == Proxy {
			res.busy.Add(int64(time.Since(t0)))
		}
	case IsShed(r.Err):
		res.shed[kind].Add(1)
	default:
		b.Errorf("%s: %v", kind, r.Err)
	}
}

// settle gives the last segments' jobs the time a camera's next segment
// would give them (what is still queued after it counts as shed), then
// closes the stage.
func (res *camerasRun) settle(b testing.TB, st *Stage) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if res.accounted() == res.offered[Thumb].Load()+res.offered[Proxy].Load() {
			break
		}
	}
	st.Close()
	res.cpu = count(b, st.m.cpu.WithLabelValues("thumb")) + count(b, st.m.cpu.WithLabelValues("proxy"))
}

// runSessions is runCamerasWith offering each camera's segments as the
// recorder does, through a Session: the stage decides before copying,
// and a segment's two jobs share one pooled copy.
func runSessions(b *testing.B, cfg Config, pc codec.ProxyConfig, n int, d time.Duration, init []byte, segs [][]byte) *camerasRun {
	st, err := New(cfg, codec.NewProxyRenderer(pc), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	res := &camerasRun{}
	var wg sync.WaitGroup
	start := time.Now()
	for c := range n {
		wg.Add(1)
		emit := func(it *media.Item) error {
			kind := Thumb
			if it.Header.Track == chunk.TrackProxy {
				kind = Proxy
			}
			switch {
			case it.Kind == media.ItemGap && it.Shed:
				res.shed[kind].Add(1)
			case it.Kind == media.ItemGap:
				b.Errorf("%s: %s", kind, it.Note)
			case it.Header.Seq > 0 || kind == Thumb: // not the proxy's init
				res.made[kind].Add(1)
			}
			return nil
		}
		ds := st.NewSession(strconv.Itoa(c), init, chunk.Header{}, emit, nil)
		go func() {
			defer wg.Done()
			phase := time.Duration(rand.Int64N(int64(2 * time.Second)))
			for k := 0; ; k++ {
				at := phase + time.Duration(k)*2*time.Second
				if at >= d {
					return
				}
				time.Sleep(time.Until(start.Add(at)))
				res.offered[Thumb].Add(1)
				res.offered[Proxy].Add(1)
				ds.Segment(chunk.Header{Seq: uint64(k + 1)}, segs[(k+c)%len(segs)])()
			}
		}()
	}
	wg.Wait()
	res.settle(b, st)
	return res
}

// BenchmarkCameras: how many concurrent real-time 30 fps cameras the
// transcode stage (default size: cores − 1 workers) keeps proxies and
// thumbnails up with, and what it sheds beyond. Each case streams 20 s of
// camera time. Metrics: proxy_made/op and thumb_made/op are the fractions
// of segments that got their rendition; proxy_shed/s is derived work shed
// per second; proxy_latency_s the mean time from a segment's job being
// offered to its proxy being made (queueing included).
func BenchmarkCameras(b *testing.B) {
	astiav.SetLogLevel(astiav.LogLevelError)
	const d = 20 * time.Second
	for _, res := range []struct {
		name string
		w, h int
		cams []int
	}{
		{"720p30", 1280, 720, []int{1, 2, 3, 4, 6, 8, 12}},
		{"1080p30", 1920, 1080, []int{1, 2, 3, 4}},
	} {
		var init []byte
		var segs [][]byte
		for _, n := range res.cams {
			b.Run(fmt.Sprintf("%s/cameras=%d", res.name, n), func(b *testing.B) {
				if init == nil {
					init, segs = benchSegments(b, res.w, res.h, 6)
				}
				b.ResetTimer()
				var r *camerasRun
				for range b.N {
					r = runCameras(b, n, d, init, segs)
				}
				ratio := func(k Kind) float64 { return float64(r.made[k].Load()) / float64(max(r.offered[k].Load(), 1)) }
				b.ReportMetric(ratio(Proxy), "proxy_made/op")
				b.ReportMetric(ratio(Thumb), "thumb_made/op")
				b.ReportMetric(float64(r.shed[Proxy].Load())/d.Seconds(), "proxy_shed/s")
				if m := r.made[Proxy].Load(); m > 0 {
					b.ReportMetric(time.Duration(r.busy.Load()/m).Seconds(), "proxy_latency_s")
				}
			})
		}
	}
}

// BenchmarkCamerasBudget: the CPU the transcode stage costs per camera,
// with n real-time 720p30 cameras offering it every segment, as it was
// (no budget, FFmpeg choosing its threads) and with a CPU budget (one
// thread per job, as the recorder now runs it, and the preset chosen by
// BenchmarkProxyPreset in place of veryfast), in the same run so that
// the machine's other load weighs on both. cores/camera is the process's
// CPU over the run (nothing else runs in it) per camera; stage_cores the
// CPU the stage measured on its threads; proxy_made/op the fraction of
// segments that got a proxy.
func BenchmarkCamerasBudget(b *testing.B) {
	astiav.SetLogLevel(astiav.LogLevelError)
	const d = 20 * time.Second
	init, segs := benchSegments(b, 1280, 720, 6)
	for _, n := range []int{8} {
		for _, tc := range []struct {
			name    string
			cpu     float64
			threads int
			preset  string
			bytes   int
		}{{"before", 0, 0, "veryfast", 1 << 40}, {"budget=0.25", 0.25, 1, "", 0}} {
			b.Run(fmt.Sprintf("cameras=%d/%s", n, tc.name), func(b *testing.B) {
				var r *camerasRun
				var cores, stage float64
				for range b.N {
					cpu0, t0 := processCPUTime(), time.Now()
					r = runSessions(b, Config{CPU: tc.cpu, QueueBytes: tc.bytes}, codec.ProxyConfig{Threads: tc.threads, Preset: tc.preset}, n, d, init, segs)
					cores = (processCPUTime() - cpu0).Seconds() / time.Since(t0).Seconds()
					stage = r.cpu / d.Seconds()
				}
				b.ReportMetric(cores/float64(n), "cores/camera")
				b.ReportMetric(stage, "stage_cores")
				b.ReportMetric(float64(r.made[Proxy].Load())/float64(max(r.offered[Proxy].Load(), 1)), "proxy_made/op")
				b.ReportMetric(float64(r.made[Thumb].Load())/float64(max(r.offered[Thumb].Load(), 1)), "thumb_made/op")
			})
		}
	}
}

// processCPUTime is the process's CPU time so far, all threads.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
