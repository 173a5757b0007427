package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
)

// The servers the side-by-side benchmark runs.
const (
	ServerDefaults     = "camvault serve (defaults)"
	ServerTranscodeOff = "camvault serve --transcode-workers 0"
	ServerBaseline     = "baseline (gortsplib + fMP4 files)"
)

// BuildBaseline builds the plain recorder (bench/baseline) into dir.
func BuildBaseline(dir string) (string, error) {
	bin := filepath.Join(dir, "rtsp-baseline")
	if out, err := exec.Command("go", "build", "-o", bin, "camvault/bench/baseline").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the baseline: %v\n%s", err, out)
	}
	return bin, nil
}

// rssSampler samples a process's RSS every half second: the peak over
// the run and in each of its halves.
type rssSampler struct {
	stop, done                chan struct{}
	peak, firstHalf, secondHf atomic.Int64 // KiB
}

func sampleRSS(pid int, half time.Time) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(500 * time.Millisecond):
				r := int64(rssMiB(pid) * 1024)
				h := &s.firstHalf
				if time.Now().After(half) {
					h = &s.secondHf
				}
				for _, m := range []*atomic.Int64{&s.peak, h} {
					if r > m.Load() {
						m.Store(r)
					}
				}
			}
		}
	}()
	return s
}

// finish stops sampling and returns the peaks in MiB.
func (s *rssSampler) finish() (peak, firstHalf, secondHalf float64) {
	close(s.stop)
	<-s.done
	return float64(s.peak.Load()) / 1024, float64(s.firstHalf.Load()) / 1024, float64(s.secondHf.Load()) / 1024
}

// BaselineConfig is one run of the plain recorder.
type BaselineConfig struct {
	Binary   string // the baseline, from BuildBaseline
	Cameras  int
	Duration time.Duration
	Clip     *Clip
	WorkDir  string
}

// RunBaseline starts the plain recorder, has the same simulated cameras
// publish to it as RunLoad does to camvault, and measures its process the
// same way (CPU and RSS from /proc). A stream counts as kept when every
// picture it sent is in the recorder's files, read back with mediacommon's
// fMP4 parser after the recorder has closed them. The recorder has no
// latency histogram: P50–P99 stay zero.
func RunBaseline(ctx context.Context, cfg BaselineConfig) (*LoadResult, error) {
	dir := filepath.Join(cfg.WorkDir, fmt.Sprintf("baseline-%d", cfg.Cameras))
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	srv := exec.Command(cfg.Binary, "--rtsp", addr, "--dir", dir)
	logs, kill, err := startReady(srv)
	if err != nil {
		return nil, err
	}
	defer kill()
	pid := srv.Process.Pid
	res := &LoadResult{Cameras: cfg.Cameras, RSSBaseMiB: rssMiB(pid)}
	cpu0, t0 := cpuSeconds(pid), time.Now()
	rss := sampleRSS(pid, t0.Add(cfg.Duration/2))
	sent := make([]int64, cfg.Cameras)
	errs := make([]error, cfg.Cameras)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Cameras; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Starts spread over one GOP, as in RunLoad.
			time.Sleep(time.Duration(i) * 2 * time.Second / time.Duration(cfg.Cameras))
			sent[i], errs[i] = cfg.Clip.publishRaw(ctx, addr, fmt.Sprintf("load%d", i), "baseline", cfg.Duration, 0, false)
		}(i)
	}
	wg.Wait()
	cpu1, t1 := cpuSeconds(pid), time.Now()
	res.RSSPeakMiB, res.RSSFirstHalfMiB, res.RSSSecondHalfMiB = rss.finish()
	res.ServerCores = (cpu1 - cpu0) / t1.Sub(t0).Seconds()
	res.CoresPerStream = res.ServerCores / float64(cfg.Cameras)
	res.MiBPerStream = (res.RSSPeakMiB - res.RSSBaseMiB) / float64(cfg.Cameras)

	srv.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("baseline: %v: %s", err, logs.String())
		}
	case <-time.After(60 * time.Second):
		return nil, errors.New("baseline did not stop within 60 s")
	}
	recorded, err := countRecorded(dir)
	if err != nil {
		return nil, err
	}
	if res.StoredBytes, err = dirBytes(dir); err != nil {
		return nil, err
	}
	res.tally(cfg.Clip, sent, errs, recorded, "recorded", logs.String())
	return res, nil
}

// tally adds up what camera loadN sent (sent[N], ended by errs[N]) against
// what the server kept of it (kept["loadN"], in access units): a stream
// counts as kept with zero loss when it ended cleanly and every access
// unit it sent was kept. When one was not, the server's last log lines
// are added to the errors.
func (res *LoadResult) tally(clip *Clip, sent []int64, errs []error, kept map[string]int64, keptAs, logs string) {
	for i := range sent {
		res.SentBytes += clip.payloadBytes(sent[i])
		res.Sent += sent[i]
		d := kept[fmt.Sprintf("load%d", i)]
		res.Durable += d
		switch {
		case errs[i] != nil:
			res.Errors = append(res.Errors, fmt.Sprintf("load%d: %v", i, errs[i]))
		case d != sent[i]:
			res.Errors = append(res.Errors, fmt.Sprintf("load%d: sent %d, %s %d", i, sent[i], keptAs, d))
		default:
			res.ZeroLoss++
		}
	}
	if res.ZeroLoss < len(sent) {
		lines := strings.Split(strings.TrimSpace(logs), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		res.Errors = append(res.Errors, lines...)
	}
}

// countRecorded reads every segment the baseline wrote under dir (one
// folder per camera) and counts the pictures in each camera's files. A
// file that does not parse is an error: a recorder that writes broken
// files has not recorded.
func countRecorded(dir string) (map[string]int64, error) {
	cams, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, c := range cams {
		files, err := filepath.Glob(filepath.Join(dir, c.Name(), "*.mp4"))
		if err != nil {
			return nil, err
		}
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				return nil, err
			}
			var init fmp4.Init
			if err := init.Unmarshal(bytes.NewReader(b)); err != nil {
				return nil, fmt.Errorf("%s: init: %w", name, err)
			}
			var parts fmp4.Parts
			if err := parts.Unmarshal(b); err != nil {
				return nil, fmt.Errorf("%s: fragments: %w", name, err)
			}
			for _, p := range parts {
				for _, t := range p.Tracks {
					out[c.Name()] += int64(len(t.Samples))
				}
			}
		}
	}
	return out, nil
}

// startReady starts a server process (camvault serve or the baseline),
// keeps the first MiB of its standard error, and waits up to 30 s for it
// to print "ready". kill ends it and reaps it; after a graceful stop it
// does nothing.
func startReady(srv *exec.Cmd) (logs *limitedBuffer, kill func(), err error) {
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	logs = &limitedBuffer{max: 1 << 20}
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		return nil, nil, err
	}
	kill = func() {
		srv.Process.Kill()
		srv.Wait()
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for said := false; sc.Scan(); {
			if sc.Text() == "ready" && !said {
				said = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
		return logs, kill, nil
	case <-time.After(30 * time.Second):
		kill()
		return nil, nil, fmt.Errorf("%s not ready within 30 s: %s", filepath.Base(srv.Path), logs.String())
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	b   strings.Builder
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < l.max {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// VsConfig is a side-by-side run: at each camera count, Rounds rounds, each
// running every server in Servers once, one after the other (A B A B), so
// that the machine's other load moves every server alike.
type VsConfig struct {
	Camvault, Baseline string // binaries
	Clip               *Clip
	Cameras            []int
	Duration           time.Duration
	Rounds             int
	Servers            []string // default: defaults, baseline, transcode off
	WorkDir            string
	Logf               func(format string, args ...any)
}

// VsRow is one server's run.
type VsRow struct {
	Cameras        int      `json:"cameras"`
	Server         string   `json:"server"`
	Round          int      `json:"round"`
	CoresPerStream float64  `json:"cores_per_stream"`
	MiBPerStream   float64  `json:"rss_mib_per_stream"`
	ZeroLoss       int      `json:"streams_zero_loss"`
	Sent           int64    `json:"sent"`
	Kept           int64    `json:"kept"`
	P99Ms          float64  `json:"p99_ingest_to_durable_ms,omitempty"`
	Errors         []string `json:"errors,omitempty"`
}

// VsSummary is one server at one camera count over the rounds: medians
// and ranges, and its ratio to the baseline (the median over rounds of
// this server / the baseline in the same round; lower is cheaper).
type VsSummary struct {
	Cameras      int       `json:"cameras"`
	Server       string    `json:"server"`
	CPUMedian    float64   `json:"cores_per_stream"`
	CPUMin       float64   `json:"cores_per_stream_min"`
	CPUMax       float64   `json:"cores_per_stream_max"`
	RSSMedian    float64   `json:"rss_mib_per_stream"`
	RSSMin       float64   `json:"rss_mib_per_stream_min"`
	RSSMax       float64   `json:"rss_mib_per_stream_max"`
	MinZeroLoss  int       `json:"streams_zero_loss_min"`
	P99MaxMs     float64   `json:"p99_ingest_to_durable_ms_max,omitempty"`
	CPURatio     float64   `json:"cpu_vs_baseline,omitempty"`
	RSSRatio     float64   `json:"rss_vs_baseline,omitempty"`
	CPURatioList []float64 `json:"cpu_vs_baseline_rounds,omitempty"`
}

// VsWHIP is CPU per WebRTC camera against an RTSP camera of the same
// bitrate, in the same run.
type VsWHIP struct {
	Cameras            int     `json:"cameras"`
	Bitrate            string  `json:"bitrate"`
	RTSPCoresPerStream float64 `json:"rtsp_cores_per_stream"`
	WHIPCoresPerStream float64 `json:"whip_cores_per_stream"`
	RTSPZeroLoss       int     `json:"rtsp_streams_zero_loss"`
	WHIPZeroLoss       int     `json:"whip_streams_zero_loss"`
	Ratio              float64 `json:"whip_vs_rtsp_cpu"`
}

// VsReport is what the side-by-side benchmark prints and saves.
type VsReport struct {
	When    time.Time   `json:"when"`
	CPU     string      `json:"cpu"`
	Cores   int         `json:"cores"`
	Go      string      `json:"go"`
	Commit  string      `json:"commit,omitempty"`
	Seconds float64     `json:"seconds_per_run"`
	Rounds  int         `json:"rounds"`
	Rows    []VsRow     `json:"runs"`
	Summary []VsSummary `json:"summary"`
	WHIP    *VsWHIP     `json:"whip,omitempty"`
	// CPUMax and OffCPUMax are the guard's limits on camvault / baseline
	// CPU, defaults and transcode off (bench/floors.json
	// vs_baseline_cpu_max, vs_baseline_off_cpu_max), when the guard ran.
	CPUMax    float64  `json:"vs_baseline_cpu_max,omitempty"`
	OffCPUMax float64  `json:"vs_baseline_off_cpu_max,omitempty"`
	Failing   []string `json:"failing,omitempty"`
}

// RunVsBaseline runs every round and summarizes it.
func RunVsBaseline(ctx context.Context, cfg VsConfig) (*VsReport, error) {
	servers := cfg.Servers
	if len(servers) == 0 {
		servers = []string{ServerDefaults, ServerBaseline, ServerTranscodeOff}
	}
	if !slices.Contains(servers, ServerBaseline) {
		return nil, errors.New("side by side: the baseline must be one of the servers")
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rep := &VsReport{When: time.Now().UTC(), CPU: cpuModel(), Cores: runtime.NumCPU(), Go: runtime.Version(), Commit: commit(),
		Seconds: cfg.Duration.Seconds(), Rounds: cfg.Rounds}
	for _, n := range cfg.Cameras {
		rows, err := vsRounds(ctx, cfg, servers, n, logf)
		if err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, rows...)
		rep.Summary = append(rep.Summary, summarize(n, servers, rows)...)
	}
	return rep, nil
}

// vsRounds runs cfg.Rounds rounds of every server at n cameras.
func vsRounds(ctx context.Context, cfg VsConfig, servers []string, n int, logf func(string, ...any)) ([]VsRow, error) {
	var rows []VsRow
	for round := 1; round <= cfg.Rounds; round++ {
		for _, s := range servers {
			work, err := os.MkdirTemp(cfg.WorkDir, "vs-")
			if err != nil {
				return nil, err
			}
			var res *LoadResult
			began := time.Now()
			switch s {
			case ServerBaseline:
				res, err = RunBaseline(ctx, BaselineConfig{Binary: cfg.Baseline, Cameras: n, Duration: cfg.Duration, Clip: cfg.Clip, WorkDir: work})
			case ServerDefaults, ServerTranscodeOff:
				res, err = RunLoad(ctx, LoadConfig{Binary: cfg.Camvault, Cameras: n, Duration: cfg.Duration, Clip: cfg.Clip, WorkDir: work,
					Defaults: s == ServerDefaults})
			default:
				err = fmt.Errorf("unknown server %q", s)
			}
			// Each run writes n × 4 Mbit/s for the whole run: free the
			// disk before the next.
			os.RemoveAll(work)
			if err != nil {
				return nil, fmt.Errorf("%d cameras, round %d, %s: %w", n, round, s, err)
			}
			row := VsRow{Cameras: n, Server: s, Round: round, CoresPerStream: res.CoresPerStream, MiBPerStream: res.MiBPerStream,
				ZeroLoss: res.ZeroLoss, Sent: res.Sent, Kept: res.Durable, P99Ms: float64(res.P99.Microseconds()) / 1000}
			if len(res.Errors) > 10 {
				row.Errors = append(res.Errors[:10:10], fmt.Sprintf("... %d more", len(res.Errors)-10))
			} else {
				row.Errors = res.Errors
			}
			logf("%d cameras, round %d, %s: %.2f millicores/stream, %.2f MiB/stream, %d/%d zero loss, p99 %.0f ms (run took %.0f s)",
				n, round, s, row.CoresPerStream*1000, row.MiBPerStream, row.ZeroLoss, n, row.P99Ms, time.Since(began).Seconds())
			for _, e := range row.Errors {
				logf("  %s", e)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// summarize folds the rounds of each server at n cameras.
func summarize(n int, servers []string, rows []VsRow) []VsSummary {
	base := map[int]VsRow{}
	for _, r := range rows {
		if r.Server == ServerBaseline {
			base[r.Round] = r
		}
	}
	var out []VsSummary
	for _, s := range servers {
		var cpu, rss, cpuRatio, rssRatio []float64
		sum := VsSummary{Cameras: n, Server: s, MinZeroLoss: n}
		for _, r := range rows {
			if r.Server != s {
				continue
			}
			cpu, rss = append(cpu, r.CoresPerStream), append(rss, r.MiBPerStream)
			sum.MinZeroLoss = min(sum.MinZeroLoss, r.ZeroLoss)
			sum.P99MaxMs = max(sum.P99MaxMs, r.P99Ms)
			if b, ok := base[r.Round]; ok && s != ServerBaseline && b.CoresPerStream > 0 && b.MiBPerStream > 0 {
				cpuRatio = append(cpuRatio, r.CoresPerStream/b.CoresPerStream)
				rssRatio = append(rssRatio, r.MiBPerStream/b.MiBPerStream)
			}
		}
		if len(cpu) == 0 {
			continue
		}
		sum.CPUMedian, sum.CPUMin, sum.CPUMax = median(cpu), slices.Min(cpu), slices.Max(cpu)
		sum.RSSMedian, sum.RSSMin, sum.RSSMax = median(rss), slices.Min(rss), slices.Max(rss)
		if len(cpuRatio) > 0 {
			sum.CPURatio, sum.RSSRatio, sum.CPURatioList = median(cpuRatio), median(rssRatio), cpuRatio
		}
		out = append(out, sum)
	}
	return out
}

// WriteMarkdown prints the side-by-side table.
func (r *VsReport) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "camvault vs a plain recorder — %s, %d cores, %s, commit %s; %d rounds of %.0f s runs, medians (range)\n\n",
		r.CPU, r.Cores, r.Go, r.Commit, r.Rounds, r.Seconds)
	fmt.Fprintln(w, "| N | server | CPU cores per stream | RSS MiB per stream | loss (streams not kept, worst round) | p99 ingest-to-durable (worst round) | CPU / baseline | RSS / baseline |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, s := range r.Summary {
		p99, cpuR, rssR := "—", "—", "—"
		if s.P99MaxMs > 0 {
			p99 = fmt.Sprintf("%.2f s", s.P99MaxMs/1000)
		}
		if s.CPURatio > 0 {
			cpuR, rssR = fmt.Sprintf("%.2f×", s.CPURatio), fmt.Sprintf("%.2f×", s.RSSRatio)
		}
		fmt.Fprintf(w, "| %d | %s | %.4f (%.4f–%.4f) | %.2f (%.2f–%.2f) | %d | %s | %s | %s |\n", s.Cameras, s.Server,
			s.CPUMedian, s.CPUMin, s.CPUMax, s.RSSMedian, s.RSSMin, s.RSSMax, s.Cameras-s.MinZeroLoss, p99, cpuR, rssR)
	}
	if x := r.WHIP; x != nil {
		fmt.Fprintf(w, "\nWHIP, %d cameras at %s (camvault, transcode off): %.4f cores per WebRTC camera vs %.4f per RTSP camera = %.2f× (loss: %d WebRTC, %d RTSP)\n",
			x.Cameras, x.Bitrate, x.WHIPCoresPerStream, x.RTSPCoresPerStream, x.Ratio, x.Cameras-x.WHIPZeroLoss, x.Cameras-x.RTSPZeroLoss)
	}
	if r.CPUMax > 0 {
		fmt.Fprintf(w, "\nguard (bench/floors.json): camvault / baseline CPU at most %.2f with the defaults (vs_baseline_cpu_max), "+
			"%.2f with transcode off (vs_baseline_off_cpu_max)\n", r.CPUMax, r.OffCPUMax)
	}
	for _, f := range r.Failing {
		fmt.Fprintf(w, "\nFAIL: %s\n", f)
	}
}

// WriteJSON saves the report.
func (r *VsReport) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
