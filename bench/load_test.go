package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRTSPLoad runs N simulated 4 Mbit/s cameras against a real
// camvault process. Streams and duration come from CAMVAULT_BENCH_STREAMS
// (comma-separated, default "25,100,175,200") and CAMVAULT_BENCH_SECONDS
// (default 20).
func BenchmarkRTSPLoad(b *testing.B) {
	bin, clip := loadSetup(b, "4M")
	streams := envStreams(b, "CAMVAULT_BENCH_STREAMS", 25, 100, 175, 200)
	seconds := envSeconds(b)
	b.Logf("clip: %d frames, %.2f Mbit/s", len(clip.Frames), clip.Bitrate()/1e6)
	for _, n := range streams {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			var res *LoadResult
			var err error
			for i := 0; i < b.N; i++ {
				res, err = RunLoad(context.Background(), LoadConfig{Binary: bin, Cameras: n,
					Duration: time.Duration(seconds) * time.Second, Clip: clip, WorkDir: b.TempDir(),
					ServerArgs: strings.Fields(os.Getenv("CAMVAULT_BENCH_SERVER_ARGS")),
					Env:        strings.Fields(os.Getenv("CAMVAULT_BENCH_SERVER_ENV"))})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.ZeroLoss), "streams-zero-loss")
			b.ReportMetric(res.CoresPerStream*1000, "server-millicores/stream")
			b.ReportMetric(res.MiBPerStream, "server-MiB/stream")
			b.ReportMetric(res.HeapInuseMiB/float64(n), "heap-MiB/stream")
			b.ReportMetric((res.RSSSecondHalfMiB-res.RSSFirstHalfMiB)/float64(n), "rss-growth-MiB/stream")
			b.ReportMetric(float64(res.P50.Milliseconds()), "p50-ms")
			b.ReportMetric(float64(res.P95.Milliseconds()), "p95-ms")
			b.ReportMetric(float64(res.P99.Milliseconds()), "p99-ms")
			b.ReportMetric(float64(res.P99Run.Milliseconds()), "p99-whole-run-ms")
			b.ReportMetric(float64(res.CutP99.Milliseconds()), "cut-to-durable-p99-ms")
			b.ReportMetric(res.StorageOverhead(), "disk-bytes/received-byte")
			b.ReportMetric(float64(res.AlertP99.Microseconds())/1000, "alert-p99-ms")
			b.ReportMetric(float64(res.Durable)/float64(max(res.Sent, 1)), "durable/sent")
			for i, e := range res.Errors {
				if i == 30 {
					b.Logf("... %d more", len(res.Errors)-30)
					break
				}
				b.Log(e)
			}
		})
	}
}

// BenchmarkWHIPLoad runs N simulated WebRTC cameras (pion, 2 Mbit/s H.264)
// and, in the same run and with the same clip, N RTSP cameras, so the
// WebRTC cost per stream is read as a ratio to RTSP's. Streams come from
// CAMVAULT_BENCH_WHIP_STREAMS (default "10,25"), duration from
// CAMVAULT_BENCH_SECONDS (default 20).
func BenchmarkWHIPLoad(b *testing.B) {
	bin, clip := loadSetup(b, "2M")
	streams := envStreams(b, "CAMVAULT_BENCH_WHIP_STREAMS", 10, 25)
	seconds := envSeconds(b)
	for _, n := range streams {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			var rtsp, whip *LoadResult
			for i := 0; i < b.N; i++ {
				for _, proto := range []string{"rtsp", "whip"} {
					res, err := RunLoad(context.Background(), LoadConfig{Binary: bin, Cameras: n, Protocol: proto,
						Duration: time.Duration(seconds) * time.Second, Clip: clip, WorkDir: b.TempDir(),
						ServerArgs: strings.Fields(os.Getenv("CAMVAULT_BENCH_SERVER_ARGS"))})
					if err != nil {
						b.Fatal(err)
					}
					for i, e := range res.Errors {
						if i == 10 {
							break
						}
						b.Logf("%s: %s", proto, e)
					}
					if proto == "rtsp" {
						rtsp = res
					} else {
						whip = res
					}
				}
			}
			b.ReportMetric(float64(whip.ZeroLoss), "whip-streams-zero-loss")
			b.ReportMetric(whip.CoresPerStream*1000, "whip-millicores/stream")
			b.ReportMetric(whip.MiBPerStream, "whip-MiB/stream")
			b.ReportMetric(float64(whip.P99.Milliseconds()), "whip-p99-ms")
			b.ReportMetric(float64(rtsp.ZeroLoss), "rtsp-streams-zero-loss")
			b.ReportMetric(rtsp.CoresPerStream*1000, "rtsp-millicores/stream")
			b.ReportMetric(rtsp.MiBPerStream, "rtsp-MiB/stream")
			b.ReportMetric(float64(rtsp.P99.Milliseconds()), "rtsp-p99-ms")
			b.ReportMetric(whip.CoresPerStream/rtsp.CoresPerStream, "whip/rtsp-cpu")
		})
	}
}

// BenchmarkRTSPRamp adds 4 Mbit/s cameras step by step until a stream
// loses data or p99 ingest-to-durable latency passes the segment duration
// plus 500 ms, and reports the last load that held. Steps come from
// CAMVAULT_BENCH_RAMP ("start:step:max", default "50:25:300"), each run
// lasting CAMVAULT_BENCH_SECONDS (default 20).
func BenchmarkRTSPRamp(b *testing.B) {
	start, step, limit := 50, 25, 300
	if s := os.Getenv("CAMVAULT_BENCH_RAMP"); s != "" {
		if _, err := fmt.Sscanf(s, "%d:%d:%d", &start, &step, &limit); err != nil || start <= 0 || step <= 0 {
			b.Fatalf("CAMVAULT_BENCH_RAMP: %q", s)
		}
	}
	seconds := envSeconds(b)
	bin, clip := loadSetup(b, "4M")
	const budget = 2*time.Second + 500*time.Millisecond // segment + 500 ms
	for i := 0; i < b.N; i++ {
		held := 0
		for n := start; n <= limit; n += step {
			res, err := RunLoad(context.Background(), LoadConfig{Binary: bin, Cameras: n,
				Duration: time.Duration(seconds) * time.Second, Clip: clip, WorkDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("%d streams: %d zero loss, %.1f millicores/stream, p95 %v, p99 %v", n, res.ZeroLoss, res.CoresPerStream*1000, res.P95, res.P99)
			if res.ZeroLoss < n || res.P99 > budget {
				break
			}
			held = n
		}
		b.ReportMetric(float64(held), "max-streams")
	}
}

// loadSetup builds the camvault binary the load runs start and encodes the
// cameras' clip at bitrate.
func loadSetup(b *testing.B, bitrate string) (string, *Clip) {
	b.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		b.Fatalf("ffmpeg is required: %v", err)
	}
	work := b.TempDir()
	bin := filepath.Join(work, "camvault")
	if out, err := exec.Command("go", "build", "-o", bin, "camvault/cmd/camvault").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	clip, err := MakeClip(4, bitrate)
	if err != nil {
		b.Fatal(err)
	}
	return bin, clip
}

// envStreams reads a comma-separated list of stream counts.
func envStreams(b *testing.B, name string, def ...int) []int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("%s: %q", name, s)
		}
		out = append(out, n)
	}
	return out
}

// envSeconds is how long each load run lasts: CAMVAULT_BENCH_SECONDS, 20 s.
func envSeconds(b *testing.B) int {
	b.Helper()
	s := os.Getenv("CAMVAULT_BENCH_SECONDS")
	if s == "" {
		return 20
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		b.Fatalf("CAMVAULT_BENCH_SECONDS: %q", s)
	}
	return n
}
