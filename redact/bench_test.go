package redact

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var cliTimes = regexp.MustCompile(`utime=([0-9.]+)s stime=([0-9.]+)s rtime=([0-9.]+)s`)

// cost is what one run took: wall-clock time and CPU time (user and
// system, all threads). On a shared machine the CPU time is the steadier
// measure.
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

// measure runs f and returns its cost.
func measure(f func() error) (cost, error) {
	start, cpu := time.Now(), cpuTime()
	err := f()
	return cost{time.Since(start), cpuTime() - cpu}, err
}

// cliRun runs the ffmpeg CLI with -benchmark and returns the times it
// reports for the work itself (rtime, utime + stime: from opening the
// input to the end, without the process's start-up).
func cliRun(args ...string) (cost, error) {
	out, err := exec.Command("ffmpeg", append([]string{"-hide_banner", "-nostdin", "-benchmark"}, args...)...).CombinedOutput()
	if err != nil {
		return cost{}, fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	m := cliTimes.FindSubmatch(out)
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

// benchSeconds is the clip length of BenchmarkRender: 60 s, or
// REDACT_BENCH_SECONDS for a quicker run.
func benchSeconds() float64 {
	if s, err := strconv.ParseFloat(os.Getenv("REDACT_BENCH_SECONDS"), 64); err == nil && s > 0 {
		return s
	}
	return 60
}

// BenchmarkDetect: face detection on every picture of a 4 s 720p clip
// with two faces, on one core (GOMAXPROCS 1, one decoder thread), in
// pictures analysed per second; beside it the ffmpeg CLI only decoding
// the same clip on one thread (detection has no CLI counterpart), and
// the ratio. With the default Every = 5 a 30 fps camera needs 6
// analysed pictures a second for real time.
func BenchmarkDetect(b *testing.B) {
	media := makeClip(b, false, true, 4, "1280x720")
	file := filepath.Join(b.TempDir(), "clip.mp4")
	os.WriteFile(file, media, 0o600)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var ours, cli cost
	frames := 120
	b.ResetTimer()
	for range b.N {
		var tracks []Track
		c, err := measure(func() (err error) {
			tracks, err = Detect(context.Background(), Memory(media), DetectOptions{Every: 1, Threads: 1, Workers: 1})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(tracks) < 2 {
			b.Fatalf("%d tracks", len(tracks))
		}
		ours = ours.better(c)
		b.StopTimer()
		d, err := cliRun("-threads", "1", "-i", file, "-an", "-f", "null", "-")
		if err != nil {
			b.Fatal(err)
		}
		cli = cli.better(d)
		b.StartTimer()
	}
	fps := float64(frames) / ours.wall.Seconds()
	b.ReportMetric(fps, "analysed-frames/s")
	b.ReportMetric(float64(frames)/ours.cpu.Seconds(), "analysed-frames/cpu-s")
	b.ReportMetric(float64(frames)/cli.wall.Seconds(), "cli-decode-frames/s")
	b.ReportMetric(float64(frames)/cli.cpu.Seconds(), "cli-decode-frames/cpu-s")
	b.ReportMetric(cli.cpu.Seconds()/ours.cpu.Seconds(), "cpu-ratio-to-decode")
	b.ReportMetric(float64(frames)/ours.cpu.Seconds()*5/30, "x-realtime-every5-per-core")
}

// BenchmarkRender: a 60 s 720p H.264/AAC clip with two faces rendered
// with both faces blurred and 10 s muted, one thread (decoder, encoder),
// as a multiple of real time; beside it the ffmpeg CLI doing the same on
// one thread (crop, boxblur, overlay for each face, volume=0 for the
// mute, the same x264 and AAC settings), and the ratio (camvault/CLI).
func BenchmarkRender(b *testing.B) {
	secs := benchSeconds()
	media := makeClip(b, false, true, secs, "1280x720")
	file := filepath.Join(b.TempDir(), "clip.mp4")
	os.WriteFile(file, media, 0o600)
	// Static tracks where the faces are, sampled every 5th picture as
	// Detect would give them (detection is measured on its own).
	var tracks []Track
	for i, r := range faceRects {
		t := Track{ID: i + 1}
		box := Box{X: float64(r.Min.X) / clipW, Y: float64(r.Min.Y) / clipH, W: float64(r.Dx()) / clipW, H: float64(r.Dy()) / clipH}
		for at := time.Duration(0); at < time.Duration(secs*float64(time.Second)); at += time.Second / 6 {
			t.Detections = append(t.Detections, Detection{At: at, Box: box, Score: 10})
		}
		tracks = append(tracks, t)
	}
	plan := Plan{Tracks: tracks, Edits: []Edit{{Kind: EditMute, From: time.Second, To: 11 * time.Second, Reason: "bench"}}}
	// The CLI's filter: the same rectangles, grown by the same margin.
	filter := "[0:v]split=3[m][a][b]"
	last := "m"
	for i, t := range tracks {
		p := pixels(t.Detections[0].Box.grow(Margin), clipW, clipH)
		x, y, w, h := p.Min.X&^1, p.Min.Y&^1, p.Dx()&^1, p.Dy()&^1
		in := []string{"a", "b"}[i]
		filter += fmt.Sprintf(";[%s]crop=%d:%d:%d:%d,boxblur=luma_radius=%d:luma_power=3:chroma_radius=%d:chroma_power=3[f%d];[%s][f%d]overlay=%d:%d[o%d]",
			in, w, h, x, y, max(w, h)/8, max(w, h)/16, i, last, i, x, y, i)
		last = fmt.Sprintf("o%d", i)
	}
	filter += ";[0:a]volume=volume=0:enable='between(t,1,11)'[aout]"
	cliArgs := []string{"-threads", "1", "-i", file, "-filter_threads", "1", "-filter_complex", filter, "-map", "[" + last + "]", "-map", "[aout]",
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-bf", "0", "-threads", "1", "-c:a", "aac", "-b:a", "96k", "-f", "mp4", "-y", os.DevNull}
	var ours, cli cost
	b.ResetTimer()
	for range b.N {
		var out bytes.Buffer
		c, err := measure(func() error {
			return (Renderer{Threads: 1}).Render(context.Background(), Memory(media), plan, &out)
		})
		if err != nil {
			b.Fatal(err)
		}
		ours = ours.better(c)
		b.StopTimer()
		d, err := cliRun(cliArgs...)
		if err != nil {
			b.Fatal(err)
		}
		cli = cli.better(d)
		b.StartTimer()
	}
	b.ReportMetric(secs/ours.wall.Seconds(), "x-realtime")
	b.ReportMetric(secs/ours.cpu.Seconds(), "x-realtime-per-cpu-s")
	b.ReportMetric(secs/cli.wall.Seconds(), "cli-x-realtime")
	b.ReportMetric(secs/cli.cpu.Seconds(), "cli-x-realtime-per-cpu-s")
	b.ReportMetric(cli.wall.Seconds()/ours.wall.Seconds(), "wall-ratio")
	b.ReportMetric(cli.cpu.Seconds()/ours.cpu.Seconds(), "cpu-ratio")
}
