package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkVsBaseline runs camvault beside the plain recorder of
// bench/baseline (gortsplib + mediacommon's fMP4 writer, 2 s segments, no
// crypto, no fsync) with the same simulated 4 Mbit/s 720p30 RTSP/TCP
// cameras: at each camera count, CAMVAULT_BENCH_ROUNDS rounds (default 2)
// of `serve` with its defaults, the baseline, and `serve
// --transcode-workers 0`, one after the other, so the machine's other load
// moves all three alike. It prints the table (CPU and RSS per stream, loss,
// p99 ingest-to-durable, camvault / baseline), then a WHIP row, and saves
// bench/results/vs-baseline.json. Camera counts come from
// CAMVAULT_BENCH_STREAMS (default "100,200"), run length from
// CAMVAULT_BENCH_SECONDS (default 20), the WHIP row's cameras from
// CAMVAULT_BENCH_VS_WHIP (default 25, 0 for none).
func BenchmarkVsBaseline(b *testing.B) {
	bin, clip := loadSetup(b, "4M")
	base, err := BuildBaseline(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	streams := envStreams(b, "CAMVAULT_BENCH_STREAMS", 100, 200)
	seconds := envSeconds(b)
	rounds := envInt(b, "CAMVAULT_BENCH_ROUNDS", 2)
	whipN := 0
	if os.Getenv("CAMVAULT_BENCH_VS_WHIP") != "0" {
		whipN = envInt(b, "CAMVAULT_BENCH_VS_WHIP", 25)
	}
	rep := &VsReport{}
	for _, n := range streams {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			var r *VsReport
			for i := 0; i < b.N; i++ {
				r, err = RunVsBaseline(context.Background(), VsConfig{Camvault: bin, Baseline: base, Clip: clip, Cameras: []int{n},
					Duration: time.Duration(seconds) * time.Second, Rounds: rounds, WorkDir: b.TempDir(), Logf: b.Logf})
				if err != nil {
					b.Fatal(err)
				}
			}
			for _, s := range r.Summary {
				switch s.Server {
				case ServerBaseline:
					b.ReportMetric(s.CPUMedian*1000, "baseline-millicores/stream")
					b.ReportMetric(s.RSSMedian, "baseline-MiB/stream")
				case ServerDefaults:
					b.ReportMetric(s.CPUMedian*1000, "defaults-millicores/stream")
					b.ReportMetric(s.RSSMedian, "defaults-MiB/stream")
					b.ReportMetric(s.CPURatio, "defaults/baseline-cpu")
					b.ReportMetric(s.RSSRatio, "defaults/baseline-rss")
					b.ReportMetric(s.P99MaxMs, "defaults-p99-ms")
				case ServerTranscodeOff:
					b.ReportMetric(s.CPUMedian*1000, "off-millicores/stream")
					b.ReportMetric(s.RSSMedian, "off-MiB/stream")
					b.ReportMetric(s.CPURatio, "off/baseline-cpu")
					b.ReportMetric(s.RSSRatio, "off/baseline-rss")
					b.ReportMetric(s.P99MaxMs, "off-p99-ms")
				}
			}
			*rep = mergeVs(*rep, *r)
		})
	}
	if whipN > 0 {
		b.Run(fmt.Sprintf("whip=%d", whipN), func(b *testing.B) {
			var w *VsWHIP
			for i := 0; i < b.N; i++ {
				if w, err = measureWHIP(b, bin, whipN, seconds); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(w.WHIPCoresPerStream*1000, "whip-millicores/stream")
			b.ReportMetric(w.RTSPCoresPerStream*1000, "rtsp-millicores/stream")
			b.ReportMetric(w.Ratio, "whip/rtsp-cpu")
			rep.WHIP = w
		})
	}
	if len(rep.Summary) == 0 {
		return
	}
	rep.WriteMarkdown(os.Stdout)
	if err := rep.WriteJSON("results/vs-baseline.json"); err != nil {
		b.Fatal(err)
	}
}

// measureWHIP runs n WebRTC cameras and then n RTSP cameras with the same
// 2 Mbit/s clip against camvault (originals only, like BenchmarkWHIPLoad)
// and compares their CPU per stream.
func measureWHIP(b *testing.B, bin string, n, seconds int) (*VsWHIP, error) {
	clip, err := MakeClip(4, "2M")
	if err != nil {
		return nil, err
	}
	w := &VsWHIP{Cameras: n, Bitrate: "2M"}
	for _, proto := range []string{"rtsp", "whip"} {
		res, err := RunLoad(context.Background(), LoadConfig{Binary: bin, Cameras: n, Protocol: proto,
			Duration: time.Duration(seconds) * time.Second, Clip: clip, WorkDir: b.TempDir()})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", proto, err)
		}
		if proto == "rtsp" {
			w.RTSPCoresPerStream, w.RTSPZeroLoss = res.CoresPerStream, res.ZeroLoss
		} else {
			w.WHIPCoresPerStream, w.WHIPZeroLoss = res.CoresPerStream, res.ZeroLoss
		}
	}
	if w.RTSPCoresPerStream > 0 {
		w.Ratio = w.WHIPCoresPerStream / w.RTSPCoresPerStream
	}
	return w, nil
}

// mergeVs appends one camera count's report to another.
func mergeVs(a, b VsReport) VsReport {
	if a.When.IsZero() {
		a.When, a.CPU, a.Cores, a.Go, a.Commit, a.Seconds, a.Rounds = b.When, b.CPU, b.Cores, b.Go, b.Commit, b.Seconds, b.Rounds
	}
	a.Rows = append(a.Rows, b.Rows...)
	a.Summary = append(a.Summary, b.Summary...)
	return a
}

// BenchmarkVsBaselineGuard is CI's short check of the side-by-side ratios:
// CAMVAULT_BENCH_GUARD_STREAMS cameras (default 10) for
// CAMVAULT_BENCH_GUARD_SECONDS (default 8), CAMVAULT_BENCH_GUARD_ROUNDS
// alternating rounds (default 3) of `serve` with its defaults, the
// baseline and `serve --transcode-workers 0`. Each ratio is the median
// over the rounds of camvault / baseline CPU per stream, each taken
// against the baseline of its own round. It fails when a ratio is above
// its maximum in bench/floors.json (lower is cheaper: vs_baseline_cpu_max
// for the defaults, vs_baseline_off_cpu_max for transcode off), but only
// after a second set of rounds confirms it (the median over both sets), so
// one disturbed round on a shared machine does not fail CI and a real
// regression does.
func BenchmarkVsBaselineGuard(b *testing.B) {
	floors, err := Floors()
	if err != nil {
		b.Fatal(err)
	}
	limits := map[string]float64{}
	for server, key := range guardKeys {
		if limits[server] = floors[key]; limits[server] <= 0 {
			b.Fatalf("bench/floors.json has no %s", key)
		}
	}
	setup := time.Now()
	bin, clip := loadSetup(b, "4M")
	base, err := BuildBaseline(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup (build camvault and the baseline, encode the clip): %.0f s", time.Since(setup).Seconds())
	n := envInt(b, "CAMVAULT_BENCH_GUARD_STREAMS", 10)
	seconds := envInt(b, "CAMVAULT_BENCH_GUARD_SECONDS", 8)
	rounds := envInt(b, "CAMVAULT_BENCH_GUARD_ROUNDS", 3)
	cfg := VsConfig{Camvault: bin, Baseline: base, Clip: clip, Cameras: []int{n}, Duration: time.Duration(seconds) * time.Second,
		Rounds: rounds, Logf: b.Logf}
	for i := 0; i < b.N; i++ {
		cfg.WorkDir = b.TempDir()
		rep, err := RunVsBaseline(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if over := guardFailures(rep, limits); len(over) > 0 {
			b.Logf("%v: measuring again", over)
			cfg.WorkDir = b.TempDir()
			again, err := RunVsBaseline(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			for j := range again.Rows {
				again.Rows[j].Round += rep.Rounds
			}
			rep.Rows = append(rep.Rows, again.Rows...)
			rep.Rounds += again.Rounds
			rep.Summary = summarize(n, []string{ServerDefaults, ServerBaseline, ServerTranscodeOff}, rep.Rows)
		}
		rep.CPUMax = limits[ServerDefaults]
		rep.OffCPUMax = limits[ServerTranscodeOff]
		rep.Failing = guardFailures(rep, limits)
		rep.WriteMarkdown(os.Stdout)
		if err := rep.WriteJSON("results/vs-baseline-guard.json"); err != nil {
			b.Fatal(err)
		}
		for _, s := range rep.Summary {
			switch s.Server {
			case ServerDefaults:
				b.ReportMetric(s.CPURatio, "defaults/baseline-cpu")
				b.ReportMetric(s.RSSRatio, "defaults/baseline-rss")
			case ServerTranscodeOff:
				b.ReportMetric(s.CPURatio, "off/baseline-cpu")
				b.ReportMetric(s.RSSRatio, "off/baseline-rss")
			}
		}
		if len(rep.Failing) > 0 {
			b.Fatal(strings.Join(rep.Failing, "; "))
		}
	}
}

// guardKeys names each guarded server's maximum CPU ratio in
// bench/floors.json.
var guardKeys = map[string]string{ServerDefaults: "vs_baseline_cpu_max", ServerTranscodeOff: "vs_baseline_off_cpu_max"}

// guardFailures lists the ratios above their maximum.
func guardFailures(rep *VsReport, limits map[string]float64) []string {
	var out []string
	for _, s := range rep.Summary {
		if limit, ok := limits[s.Server]; ok && s.CPURatio > limit {
			out = append(out, fmt.Sprintf("%s: %s / baseline CPU %.2f above its maximum %.2f", guardKeys[s.Server], s.Server, s.CPURatio, limit))
		}
	}
	return out
}

// TestSummarizeRatiosPerRound: each round's ratio is taken against the
// baseline of the same round, and the summary is their median, so a round
// where the whole machine was slower moves both sides.
func TestSummarizeRatiosPerRound(t *testing.T) {
	rows := []VsRow{
		{Server: ServerDefaults, Round: 1, CoresPerStream: 0.02, MiBPerStream: 3, ZeroLoss: 10},
		{Server: ServerBaseline, Round: 1, CoresPerStream: 0.01, MiBPerStream: 1.5, ZeroLoss: 10},
		{Server: ServerDefaults, Round: 2, CoresPerStream: 0.06, MiBPerStream: 3, ZeroLoss: 9, P99Ms: 2100},
		{Server: ServerBaseline, Round: 2, CoresPerStream: 0.02, MiBPerStream: 1, ZeroLoss: 10},
		{Server: ServerDefaults, Round: 3, CoresPerStream: 0.05, MiBPerStream: 4, ZeroLoss: 10, P99Ms: 2050},
		{Server: ServerBaseline, Round: 3, CoresPerStream: 0.02, MiBPerStream: 2, ZeroLoss: 10},
	}
	sum := summarize(10, []string{ServerDefaults, ServerBaseline}, rows)
	if len(sum) != 2 {
		t.Fatalf("%d summaries, want 2", len(sum))
	}
	d, base := sum[0], sum[1]
	// Per round: CPU 2, 3, 2.5 → median 2.5; RSS 2, 3, 2 → median 2.
	if d.CPURatio != 2.5 || d.RSSRatio != 2 {
		t.Fatalf("ratios %.3f CPU, %.3f RSS, want 2.5 and 2", d.CPURatio, d.RSSRatio)
	}
	if d.CPUMedian != 0.05 || d.CPUMin != 0.02 || d.CPUMax != 0.06 || d.MinZeroLoss != 9 || d.P99MaxMs != 2100 {
		t.Fatalf("defaults summary %+v", d)
	}
	if base.CPURatio != 0 || base.CPUMedian != 0.02 {
		t.Fatalf("baseline summary %+v: it has no ratio to itself", base)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median of 1..4 = %v, want 2.5", m)
	}
}

// TestCountRecordedRefusesBrokenFiles: a segment that does not parse is an
// error naming the file, not a camera with fewer pictures.
func TestCountRecordedRefusesBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "load0"), 0o755)
	name := filepath.Join(dir, "load0", "x.mp4")
	os.WriteFile(name, []byte("\x00\x00\x00\x10moovgarbage!"), 0o644)
	if _, err := countRecorded(dir); err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("countRecorded on a broken file: %v, want an error naming %s", err, name)
	}
}

// TestGuardFailures: only a guarded server above its maximum fails, and
// the message names the floors.json key.
func TestGuardFailures(t *testing.T) {
	rep := &VsReport{Summary: []VsSummary{
		{Server: ServerDefaults, CPURatio: 3.1},
		{Server: ServerBaseline},
		{Server: ServerTranscodeOff, CPURatio: 2.3},
	}}
	got := guardFailures(rep, map[string]float64{ServerDefaults: 4, ServerTranscodeOff: 2.2})
	if len(got) != 1 || !strings.Contains(got[0], "vs_baseline_off_cpu_max") || !strings.Contains(got[0], "2.30") {
		t.Fatalf("guard failures %q, want one for transcode off at 2.30", got)
	}
	if got := guardFailures(rep, map[string]float64{ServerDefaults: 4, ServerTranscodeOff: 2.4}); len(got) != 0 {
		t.Fatalf("guard failures %q under both maxima", got)
	}
}
