package codec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// benchClip is a clip as the ffmpeg CLI writes a fragmented MP4 with one
// fragment: the init segment, the media segment, and the file both make.
type benchClip struct {
	init, seg []byte
	file      string
	frames    int
}

// makeBenchClip encodes seconds of a w×h 30 fps test pattern as a camera
// would (H.264, no B-frames, one GOP) into one fMP4 fragment.
func makeBenchClip(dir string, w, h, seconds int) (*benchClip, error) {
	file := filepath.Join(dir, fmt.Sprintf("clip%dx%d.mp4", w, h))
	frames := seconds * 30
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30", w, h), "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-g", strconv.Itoa(frames), "-bf", "0", "-pix_fmt", "yuv420p",
		"-movflags", "frag_keyframe+empty_moov+default_base_moof", file).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(b, []byte("moof"))
	if at < 4 {
		return nil, errors.New("no fragment in the clip")
	}
	return &benchClip{init: b[:at-4], seg: b[at-4:], file: file, frames: frames}, nil
}

var benchTimes = regexp.MustCompile(`utime=([0-9.]+)s stime=([0-9.]+)s rtime=([0-9.]+)s`)

// cost is what one transcode took: wall-clock time and CPU time (user and
// system, all threads).
type cost struct{ wall, cpu time.Duration }

func (c cost) better(o cost) cost {
	if c.wall == 0 {
		return o
	}
	return cost{min(c.wall, o.wall), min(c.cpu, o.cpu)}
}

// cpuTime is the process's CPU time so far, all threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cliProxy runs the ffmpeg CLI on the same transcode as Proxy with the
// same settings (bicubic scale to 640x360, libx264 DefaultProxyPreset, 600 kbit/s,
// no B-frames, the decoder's and the encoder's threads, 0 letting FFmpeg
// choose; no audio) and returns the time
// it reports for the transcode itself (-benchmark's rtime, utime and
// stime: from opening the input to the end, without the process's
// start-up).
func cliProxy(file string, threads int) (cost, error) {
	th := strconv.Itoa(threads)
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-benchmark", "-threads", th, "-i", file, "-an",
		"-filter_threads", "1", "-vf", "scale=640:360:flags=bicubic", "-c:v", "libx264", "-preset", DefaultProxyPreset, "-b:v", "600k", "-bf", "0",
		"-threads", th, "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-y", os.DevNull).CombinedOutput()
	if err != nil {
		return cost{}, fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	m := benchTimes.FindSubmatch(out)
	if m == nil {
		return cost{}, fmt.Errorf("ffmpeg -benchmark printed no times: %s", out)
	}
	var t [3]time.Duration
	for i := range t {
		s, err := strconv.ParseFloat(string(m[i+1]), 64)
		if err != nil {
			return cost{}, err
		}
		t[i] = time.Duration(s * float64(time.Second))
	}
	return cost{wall: t[2], cpu: t[0] + t[1]}, nil
}

// BenchmarkProxyTranscode: 720p and 1080p H.264 to the 360p proxy through
// ProxyRenderer, beside the ffmpeg CLI doing the same transcode on the
// same input in the same run (alternating, best of each side, so that the
// rest of the machine disturbs both alike). Reports frames/s of each by
// the wall clock and per CPU-second, and their ratios (camvault/CLI): on
// a shared machine the CPU-time ratio is the steadier measure of what
// the Go layer adds.
func BenchmarkProxyTranscode(b *testing.B) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("no ffmpeg")
	}
	for _, tc := range []struct{ w, h, threads int }{{1280, 720, 1}, {1280, 720, 0}, {1920, 1080, 1}, {1920, 1080, 0}} {
		threads := strconv.Itoa(tc.threads)
		if tc.threads == 0 {
			threads = "auto"
		}
		b.Run(fmt.Sprintf("%dp/threads=%s", tc.h, threads), func(b *testing.B) {
			c, err := makeBenchClip(b.TempDir(), tc.w, tc.h, 4)
			if err != nil {
				b.Fatal(err)
			}
			r := NewProxyRenderer(ProxyConfig{Threads: tc.threads})
			var ours, cli cost
			b.ResetTimer()
			for range b.N {
				start, cpu := time.Now(), cpuTime()
				if _, _, err := r.Proxy(context.Background(), c.init, c.seg); err != nil {
					b.Fatal(err)
				}
				ours = ours.better(cost{time.Since(start), cpuTime() - cpu})
				b.StopTimer()
				d, err := cliProxy(c.file, tc.threads)
				if err != nil {
					b.Fatal(err)
				}
				cli = cli.better(d)
				b.StartTimer()
			}
			fps := func(d time.Duration) float64 { return float64(c.frames) / d.Seconds() }
			b.ReportMetric(fps(ours.wall), "frames/s")
			b.ReportMetric(fps(cli.wall), "cli-frames/s")
			b.ReportMetric(fps(ours.cpu), "frames/cpu-s")
			b.ReportMetric(fps(cli.cpu), "cli-frames/cpu-s")
			b.ReportMetric(fps(ours.wall)/fps(cli.wall), "wall-ratio")
			b.ReportMetric(fps(ours.cpu)/fps(cli.cpu), "cpu-ratio")
		})
	}
}

// BenchmarkProxyOnDemand: what a reviewer waits for when a segment's
// proxy was shed and is made on demand: Proxy on one 2 s 720p segment
// (FFmpeg's threads), reported as ms to the whole proxy segment (the
// proxy is one fMP4 fragment: its first picture plays when it is done).
func BenchmarkProxyOnDemand(b *testing.B) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("no ffmpeg")
	}
	c, err := makeBenchClip(b.TempDir(), 1280, 720, 2)
	if err != nil {
		b.Fatal(err)
	}
	r := NewProxyRenderer(ProxyConfig{})
	best := time.Duration(0)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, _, err := r.Proxy(context.Background(), c.init, c.seg); err != nil {
			b.Fatal(err)
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	b.ReportMetric(float64(best.Microseconds())/1000, "best-ms")
}

// BenchmarkThumbnail: the JPEG of a 2 s 720p segment's first keyframe.
func BenchmarkThumbnail(b *testing.B) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("no ffmpeg")
	}
	c, err := makeBenchClip(b.TempDir(), 1280, 720, 2)
	if err != nil {
		b.Fatal(err)
	}
	r := NewProxyRenderer(ProxyConfig{})
	b.ResetTimer()
	for range b.N {
		if _, err := r.Thumbnail(context.Background(), c.init, c.seg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyPreset: what each x264 preset costs through ProxyRenderer
// on one thread (as the recorder runs it, so the CPU budget sees it):
// frames of a 2 s 720p30 segment made per CPU-second, the figure the
// default preset is chosen by (with the quality each gives, measured
// beside it by SSIM against the scaled original: see DefaultProxyPreset).
func BenchmarkProxyPreset(b *testing.B) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Skip("no ffmpeg")
	}
	c, err := makeBenchClip(b.TempDir(), 1280, 720, 2)
	if err != nil {
		b.Fatal(err)
	}
	for _, preset := range []string{"ultrafast", "superfast", "veryfast"} {
		b.Run(preset, func(b *testing.B) {
			r := NewProxyRenderer(ProxyConfig{Threads: 1, Preset: preset})
			var best time.Duration
			size := 0
			for range b.N {
				cpu := cpuTime()
				_, seg, err := r.Proxy(context.Background(), c.init, c.seg)
				if err != nil {
					b.Fatal(err)
				}
				if d := cpuTime() - cpu; best == 0 || d < best {
					best = d
				}
				size = len(seg)
			}
			b.ReportMetric(float64(c.frames)/best.Seconds(), "frames/cpu-s")
			b.ReportMetric(float64(size), "proxy-bytes")
		})
	}
}
