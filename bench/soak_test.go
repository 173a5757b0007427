package bench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite": the soak reads the catalog as an auditor would

	"camvault/format/manifest"
)

// BenchmarkSoak (issue 13) records many cameras for a long time through
// reconnects and crashes: every camera reconnects every few minutes
// (staggered; every other time it drops the connection without TEARDOWN,
// as a camera losing its network), and serve is killed with SIGKILL at a
// fixed interval and restarted at once. At the end it fails unless no
// object in the store is unaccounted for, every hole in a camera's footage
// longer than a second is covered by a gap record, the server's RSS is
// flat (median of the last window against the first, sampled every 10 s
// outside the 30 s after each start), and every incident verifies.
//
// CAMVAULT_SOAK_CAMERAS (default 50), CAMVAULT_SOAK_DURATION (30m),
// CAMVAULT_SOAK_KILL_EVERY (5m) and CAMVAULT_SOAK_RECONNECT_EVERY (3m)
// size it; a short run: CAMVAULT_SOAK_CAMERAS=10 CAMVAULT_SOAK_DURATION=3m
// CAMVAULT_SOAK_KILL_EVERY=1m CAMVAULT_SOAK_RECONNECT_EVERY=40s.
func BenchmarkSoak(b *testing.B) {
	cfg := soakConfig{
		Cameras:        envInt(b, "CAMVAULT_SOAK_CAMERAS", 50),
		Duration:       envDuration(b, "CAMVAULT_SOAK_DURATION", 30*time.Minute),
		KillEvery:      envDuration(b, "CAMVAULT_SOAK_KILL_EVERY", 5*time.Minute),
		ReconnectEvery: envDuration(b, "CAMVAULT_SOAK_RECONNECT_EVERY", 3*time.Minute),
	}
	bin, clip := loadSetup(b, "2M")
	for i := 0; i < b.N; i++ {
		res, err := runSoak(b, bin, clip, cfg, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("soak: %d cameras, %v, %d kills, %d reconnects, %d incidents (%d verified), %d chunks, orphans %d, holes %d (unrecorded %d), RSS median first %.1f MiB, last %.1f MiB (%+.1f%%, %d samples)",
			cfg.Cameras, cfg.Duration, res.Kills, res.Reconnects, res.Incidents, res.Verified, res.Chunks, res.Orphans,
			res.Holes, len(res.Unrecorded), res.RSSFirst, res.RSSLast, res.RSSGrowth()*100, res.Samples)
		b.ReportMetric(float64(res.Kills), "kills")
		b.ReportMetric(float64(res.Orphans), "orphans")
		b.ReportMetric(float64(len(res.Unrecorded)), "unrecorded-gaps")
		b.ReportMetric(res.RSSGrowth()*100, "rss-growth-%")
		for _, u := range res.Unrecorded {
			b.Error("unrecorded gap: " + u)
		}
		for _, e := range res.Failed {
			b.Error("verify: " + e)
		}
		if res.Orphans != 0 {
			b.Errorf("%d objects in the store the catalog does not account for", res.Orphans)
		}
		if g := res.RSSGrowth(); g > 0.25 {
			b.Errorf("RSS grew %.0f%% (median %.1f → %.1f MiB): more than 25%%", g*100, res.RSSFirst, res.RSSLast)
		}
	}
}

type soakConfig struct {
	Cameras                             int
	Duration, KillEvery, ReconnectEvery time.Duration
}

type soakResult struct {
	Kills, Reconnects, Incidents, Verified, Chunks int
	Orphans                                        int
	Holes                                          int      // holes over a second in the cameras' footage
	Unrecorded                                     []string // of them, those no gap record covers
	Failed                                         []string // incidents that do not verify
	RSSFirst, RSSLast                              float64  // MiB, medians of the first and the last window
	Samples                                        int
}

// RSSGrowth is the last window's median RSS over the first's, less one.
func (r *soakResult) RSSGrowth() float64 {
	if r.RSSFirst == 0 {
		return 0
	}
	return r.RSSLast/r.RSSFirst - 1
}

// soakServer is the serve process of a soak, restarted after each kill.
type soakServer struct {
	bin, data string
	args      []string
	mu        sync.Mutex
	cmd       *exec.Cmd
	started   time.Time
	exited    chan struct{}
}

func (s *soakServer) start() error {
	cmd := exec.Command(s.bin, append([]string{"serve", "--data", s.data}, s.args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var logs strings.Builder
	cmd.Stderr = &limitedWriter{b: &logs, n: 1 << 16}
	if err := cmd.Start(); err != nil {
		return err
	}
	ready, exited := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
		}
	}()
	go func() { cmd.Wait(); close(exited) }()
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("serve exited at start:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		return errors.New("serve not ready within 60 s")
	}
	s.mu.Lock()
	s.cmd, s.started, s.exited = cmd, time.Now(), exited
	s.mu.Unlock()
	return nil
}

// pid is the running server's, with the time it started.
func (s *soakServer) pid() (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid, s.started
}

func (s *soakServer) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (s *soakServer) stop() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		return errors.New("serve did not stop within 2 min")
	}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
	n  int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() < w.n {
		w.b.Write(p[:min(len(p), w.n-w.b.Len())])
	}
	return len(p), nil
}

func runSoak(b *testing.B, bin string, clip *Clip, cfg soakConfig, work string) (*soakResult, error) {
	data := filepath.Join(work, "data")
	if out, err := exec.Command(bin, "keygen", "--data", data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keygen: %v: %s", err, out)
	}
	secrets := make([]string, cfg.Cameras)
	for i := range secrets {
		out, err := exec.Command(bin, "camera", "add", fmt.Sprintf("soak%d", i), "--officer", "soak", "--data", data).Output()
		if err != nil {
			return nil, fmt.Errorf("camera add: %w", err)
		}
		secrets[i] = strings.TrimSpace(string(out))
	}
	rtsp := fmt.Sprintf("127.0.0.1:%d", freePort())
	s := &soakServer{bin: bin, data: data, args: []string{"--no-demo", "--rtsp", rtsp, "--rtsp-rtp", "", "--rtsp-rtcp", "",
		"--http", fmt.Sprintf("127.0.0.1:%d", freePort()), "--metrics", fmt.Sprintf("127.0.0.1:%d", freePort()),
		"--whip", fmt.Sprintf("127.0.0.1:%d", freePort()), "--ice-udp", fmt.Sprintf("127.0.0.1:%d", freePort()),
		"--log-level", "warn", "--transcode-workers", "0"}}
	if err := s.start(); err != nil {
		return nil, err
	}
	res := &soakResult{}
	t0 := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), t0.Add(cfg.Duration))
	defer cancel()

	// RSS every 10 s, outside the 30 s after each start (a fresh process
	// is still growing to its working set).
	type sample struct {
		at  time.Time
		mib float64
	}
	var samples []sample
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pid, started := s.pid()
			if time.Since(started) < 30*time.Second {
				continue
			}
			if r := rssMiB(pid); r > 0 {
				samples = append(samples, sample{time.Now(), r})
			}
		}
	}()

	var reconnects sync.Map
	for i := 0; i < cfg.Cameras; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cam := fmt.Sprintf("soak%d", i)
			// Staggered: camera i's first stream lasts its share of the
			// interval, so reconnects are spread over it.
			d := cfg.ReconnectEvery * time.Duration(i+1) / time.Duration(cfg.Cameras)
			for n := 0; time.Until(t0.Add(cfg.Duration)) > time.Second; n++ {
				_, err := clip.publishRaw(ctx, rtsp, cam, secrets[i], min(d, time.Until(t0.Add(cfg.Duration))), 0, n%2 == 1)
				if err != nil && ctx.Err() == nil {
					time.Sleep(200 * time.Millisecond) // serve is down: dial again soon
					continue
				}
				v, _ := reconnects.LoadOrStore(cam, new(int))
				*v.(*int)++
				d = cfg.ReconnectEvery
			}
		}()
	}

	var killErr error
	for next := t0.Add(cfg.KillEvery); next.Before(t0.Add(cfg.Duration)); next = next.Add(cfg.KillEvery) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(next)):
		}
		if ctx.Err() != nil {
			break
		}
		s.kill()
		res.Kills++
		if killErr = s.start(); killErr != nil {
			break
		}
	}
	<-ctx.Done()
	wg.Wait()
	reconnects.Range(func(_, v any) bool { res.Reconnects += *v.(*int); return true })
	if killErr != nil {
		return nil, fmt.Errorf("restart after kill %d: %w", res.Kills, killErr)
	}
	if err := s.stop(); err != nil {
		return nil, err
	}

	// The first and the last window of RSS samples: 5 min, or a quarter
	// of a shorter run.
	window := min(5*time.Minute, cfg.Duration/4)
	var first, last []float64
	for _, sm := range samples {
		if sm.at.Before(t0.Add(window)) {
			first = append(first, sm.mib)
		}
		if sm.at.After(t0.Add(cfg.Duration - window)) {
			last = append(last, sm.mib)
		}
	}
	res.RSSFirst, res.RSSLast, res.Samples = median(first), median(last), len(samples)

	// Orphans: the sweeper's own store scan, as of now (a dry run).
	out, err := exec.Command(bin, "retention", "sweep", "--dry-run", "--data", data).Output()
	if err != nil {
		return nil, fmt.Errorf("retention sweep --dry-run: %w", err)
	}
	var sw struct {
		Unaccounted []string `json:"unaccounted"`
	}
	if err := json.Unmarshal(out, &sw); err != nil {
		return nil, fmt.Errorf("sweep output: %w", err)
	}
	res.Orphans = len(sw.Unaccounted)

	if err := soakGaps(data, res); err != nil {
		return nil, err
	}
	out, err = exec.Command(bin, "incidents", "--json", "--data", data).Output()
	if err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	var incs []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &incs); err != nil {
		return nil, err
	}
	res.Incidents = len(incs)
	identity := filepath.Join(data, "keys", "backoffice.identity")
	for _, in := range incs {
		if out, err := exec.Command(bin, "verify", in.ID, "--identity", identity, "--data", data).CombinedOutput(); err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s: %v\n%s", in.ID, err, out))
			continue
		}
		res.Verified++
	}
	return res, nil
}

// soakGaps finds every hole longer than a second between one chunk of a
// camera's original track and the next (across its incidents, on the wall
// clock) and checks that a gap record of the camera starts at the hole:
// what a crash or a lost connection cost is recorded, not silently
// missing.
func soakGaps(data string, res *soakResult) error {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db")+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT i.camera, m.line FROM manifest m JOIN incidents i ON i.id = m.incident`)
	if err != nil {
		return fmt.Errorf("read the manifests: %w", err)
	}
	defer rows.Close()
	type span struct{ from, to time.Time }
	chunks, gaps := map[string][]span{}, map[string][]span{}
	for rows.Next() {
		var cam string
		var line []byte
		var rec manifest.Record
		if err := rows.Scan(&cam, &line); err != nil {
			return err
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			return err
		}
		switch {
		case rec.Kind == manifest.KindChunk && rec.Track == "original" && rec.EndNS > rec.StartNS:
			chunks[cam] = append(chunks[cam], span{rec.Wall, rec.Wall.Add(time.Duration(rec.EndNS - rec.StartNS))})
			res.Chunks++
		case rec.Kind == manifest.KindGap && rec.FromWall != nil && rec.ToWall != nil:
			gaps[cam] = append(gaps[cam], span{*rec.FromWall, *rec.ToWall})
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	const tolerance = 500 * time.Millisecond
	for cam, cs := range chunks {
		sort.Slice(cs, func(i, j int) bool { return cs[i].from.Before(cs[j].from) })
		for i := 1; i < len(cs); i++ {
			from, to := cs[i-1].to, cs[i].from
			if to.Sub(from) <= time.Second {
				continue
			}
			res.Holes++
			covered := slices.ContainsFunc(gaps[cam], func(g span) bool {
				return g.from.Sub(from).Abs() <= tolerance && g.to.After(from)
			})
			if !covered {
				res.Unrecorded = append(res.Unrecorded, fmt.Sprintf("%s: %s to %s (%v)", cam,
					from.Format("15:04:05.000"), to.Format("15:04:05.000"), to.Sub(from).Round(time.Millisecond)))
			}
		}
	}
	return nil
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
		b.Fatalf("%s: %q, want a positive number", name, s)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		b.Fatalf("%s: %q, want a duration (e.g. 30m)", name, s)
	}
	return d
}
