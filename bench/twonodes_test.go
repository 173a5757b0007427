package bench

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"camvault/internal/pgtest"
	"camvault/internal/s3test"
)

// BenchmarkTwoNodes: is a second node worth its share? The same N
// cameras (4 Mbit/s RTSP) record once on one `camvault serve` node and
// once on two nodes sharing one PostgreSQL catalog and one S3 bucket
// (versitygw, Object Lock), N/2 cameras each (camera i on node i mod 2).
// Each run has a fresh catalog schema and bucket. The figure is the
// serve processes' CPU (both nodes' summed, from /proc) per stream;
// cpu-per-stream-two/one is the two-node figure over the one-node one,
// which the design bounds at 1.1. Rounds alternate which layout runs
// first (one then two, two then one, …) so that a machine whose load
// drifts does not favour either. PostgreSQL's backends serving the nodes
// (by application_name) and the S3 server are measured beside them, as
// they share the machine.
//
// CAMVAULT_BENCH_TWO_NODES_STREAMS (default 10) is N,
// CAMVAULT_BENCH_TWO_NODES_ROUNDS (default 1) the rounds, and
// CAMVAULT_BENCH_SECONDS (default 20) how long each camera streams;
// CAMVAULT_BENCH_SERVER_ENV (e.g. GOMAXPROCS=1) is added to every node's
// environment. CAMVAULT_BENCH_PPROF_DIR, when set, has every node serve
// Go's profiler and writes each node's CPU profile over the streaming
// (all but its first and last 2 s) there, as <nodes>n-node<i>-<k>.pprof,
// to find where a node's CPU goes (the profiler's own cost, a few
// millicores, then counts in the figures).
func BenchmarkTwoNodes(b *testing.B) {
	bin, clip := loadSetup(b, "4M")
	n := envInt(b, "CAMVAULT_BENCH_TWO_NODES_STREAMS", 10)
	if n < 2 {
		b.Fatal("CAMVAULT_BENCH_TWO_NODES_STREAMS: at least 2, one camera per node")
	}
	rounds := envInt(b, "CAMVAULT_BENCH_TWO_NODES_ROUNDS", 1)
	d := time.Duration(envSeconds(b)) * time.Second
	g := s3test.Start(b)
	b.Setenv("CAMVAULT_S3_SECRET_KEY", s3test.SecretKey)
	var sum [3]nodesResult // by node count
	for i := 0; i < b.N; i++ {
		for r := 0; r < rounds; r++ {
			order := []int{1, 2}
			if r%2 == 1 {
				order = []int{2, 1}
			}
			for _, nodes := range order {
				res, err := runNodes(b, bin, clip, g, nodes, n, d)
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%d node(s), %d cameras: idle %.4f cores; serve %.3f cores (CPU seconds per node: %.2f), postgres %.3f, s3 %.3f; %d/%d streams zero loss, %d/%d access units durable",
					nodes, n, res.idleCPU/res.idleWall, res.serveCPU/res.wall, res.perNode, res.pgCPU/res.wall, res.s3CPU/res.wall, res.zeroLoss, n, res.durable, res.sent)
				for k, e := range res.errors {
					if k == 10 {
						break
					}
					b.Logf("%d node(s): %s", nodes, e)
				}
				sum[nodes].add(res)
			}
		}
	}
	one, two := sum[1], sum[2]
	perStream := func(r nodesResult, cpu float64) float64 { return cpu / r.wall / float64(n) * 1000 }
	b.ReportMetric(perStream(one, one.serveCPU), "one-node-millicores/stream")
	b.ReportMetric(perStream(two, two.serveCPU), "two-nodes-millicores/stream")
	b.ReportMetric(perStream(two, two.serveCPU)/perStream(one, one.serveCPU), "cpu-per-stream-two/one")
	b.ReportMetric(one.idleCPU/one.idleWall*1000, "one-node-idle-millicores")
	b.ReportMetric(two.idleCPU/two.idleWall*1000, "two-nodes-idle-millicores")
	b.ReportMetric(perStream(one, one.pgCPU), "one-node-postgres-millicores/stream")
	b.ReportMetric(perStream(two, two.pgCPU), "two-nodes-postgres-millicores/stream")
	b.ReportMetric(perStream(one, one.s3CPU), "one-node-s3-millicores/stream")
	b.ReportMetric(perStream(two, two.s3CPU), "two-nodes-s3-millicores/stream")
	b.ReportMetric(float64(one.zeroLoss)/float64(b.N*rounds), "one-node-streams-zero-loss")
	b.ReportMetric(float64(two.zeroLoss)/float64(b.N*rounds), "two-nodes-streams-zero-loss")
	b.ReportMetric(float64(one.durable)/float64(max(one.sent, 1)), "one-node-durable/sent")
	b.ReportMetric(float64(two.durable)/float64(max(two.sent, 1)), "two-nodes-durable/sent")
}

// idleFor is how long the nodes' CPU is read before the cameras start.
const idleFor = 3 * time.Second

// serveCPU is the CPU seconds of every serve process so far.
func serveCPU(servers []*soakServer) float64 {
	var t float64
	for _, s := range servers {
		pid, _ := s.pid()
		t += cpuSeconds(pid)
	}
	return t
}

// nodesResult is one run's (or several runs' summed) CPU seconds and
// loss.
type nodesResult struct {
	wall                   float64   // seconds the cameras streamed
	idleCPU, idleWall      float64   // every node's CPU seconds before the cameras, over idleWall
	serveCPU, pgCPU, s3CPU float64   // CPU seconds over wall
	perNode                []float64 // each serve node's CPU seconds, for the log
	zeroLoss               int
	sent, durable          int64
	errors                 []string
}

func (s *nodesResult) add(r *nodesResult) {
	s.wall += r.wall
	s.idleCPU += r.idleCPU
	s.idleWall += r.idleWall
	s.serveCPU += r.serveCPU
	s.pgCPU += r.pgCPU
	s.s3CPU += r.s3CPU
	s.zeroLoss += r.zeroLoss
	s.sent += r.sent
	s.durable += r.durable
}

// benchApp names the PostgreSQL sessions of the benchmark's nodes, so
// that their backends' CPU is told apart from other clients'.
const benchApp = "camvault-bench-nodes"

// runNodes records cameras streams for d on nodes serve processes
// sharing a fresh catalog schema and bucket, and measures.
func runNodes(b *testing.B, bin string, clip *Clip, g *s3test.Gateway, nodes, cameras int, d time.Duration) (*nodesResult, error) {
	dsn, err := url.Parse(pgtest.NewCatalog(b))
	if err != nil {
		return nil, err
	}
	q := dsn.Query()
	q.Set("application_name", benchApp)
	dsn.RawQuery = q.Encode()
	catalogURL := dsn.String()
	bucket := fmt.Sprintf("bench-nodes-%d-%d", nodes, time.Now().UnixNano()%1e9)
	work := b.TempDir()
	data := make([]string, nodes)
	for i := range data {
		data[i] = filepath.Join(work, fmt.Sprintf("node%d", i))
	}
	if out, err := exec.Command(bin, "keygen", "--data", data[0]).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keygen: %v: %s", err, out)
	}
	for _, dir := range data[1:] {
		if err := nodeKeys(bin, data[0], dir, work); err != nil {
			return nil, err
		}
	}
	secrets := make([]string, cameras)
	for i := range secrets {
		out, err := exec.Command(bin, "camera", "add", fmt.Sprintf("load%d", i), "--officer", "load", "--data", data[0], "--catalog", catalogURL).Output()
		if err != nil {
			return nil, fmt.Errorf("camera add: %w", err)
		}
		secrets[i] = strings.TrimSpace(string(out))
	}
	servers := make([]*soakServer, nodes)
	rtsp := make([]int, nodes)
	profDir := os.Getenv("CAMVAULT_BENCH_PPROF_DIR")
	pprofPorts := make([]int, nodes)
	for i := range servers {
		rtsp[i] = freePort()
		args := []string{"--no-demo", "--log-level", "warn", "--catalog", catalogURL, "--node", fmt.Sprintf("node-%d", i),
			"--rtsp", fmt.Sprintf("127.0.0.1:%d", rtsp[i]), "--rtsp-rtp", "", "--rtsp-rtcp", "",
			"--http", fmt.Sprintf("127.0.0.1:%d", freePort()), "--whip", "-", "--transcode-workers", "0",
			"--store", "s3", "--s3-endpoint", g.Endpoint, "--s3-bucket", bucket, "--s3-access-key", s3test.AccessKey}
		if i == 0 {
			args = append(args, "--s3-create-bucket")
		}
		if profDir != "" {
			pprofPorts[i] = freePort()
			args = append(args, "--pprof", fmt.Sprintf("127.0.0.1:%d", pprofPorts[i]))
		}
		servers[i] = &soakServer{bin: bin, data: data[i], args: args, env: strings.Fields(os.Getenv("CAMVAULT_BENCH_SERVER_ENV"))}
		// One after the other: the first creates the bucket.
		if err := servers[i].start(); err != nil {
			for _, s := range servers[:i] {
				s.kill()
			}
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	stopped := false
	defer func() {
		if !stopped {
			for _, s := range servers {
				s.kill()
			}
		}
	}()
	pg, err := newBackendCPU(catalogURL)
	if err != nil {
		return nil, err
	}
	defer pg.close()

	res := &nodesResult{}
	// A node's fixed cost (lease and alert loops, its catalog pool), with
	// no camera: what a second node adds whatever its share of streams.
	idle0, i0 := serveCPU(servers), time.Now()
	time.Sleep(idleFor)
	res.idleCPU, res.idleWall = serveCPU(servers)-idle0, time.Since(i0).Seconds()
	cpu0 := make([]float64, nodes)
	for i, s := range servers {
		pid, _ := s.pid()
		cpu0[i] = cpuSeconds(pid)
	}
	s30, t0 := cpuSeconds(g.Pid()), time.Now()
	pg.sample()
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Second):
				pg.sample()
			}
		}
	}()
	sent := make([]int64, cameras)
	errs := make([]error, cameras)
	var wg sync.WaitGroup
	if profDir != "" && d > 6*time.Second {
		for i, port := range pprofPorts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(2 * time.Second)
				if err := fetchProfile(port, d-4*time.Second, filepath.Join(profDir, fmt.Sprintf("%dn-node%d-%d.pprof", nodes, i, time.Now().UnixNano()))); err != nil {
					b.Logf("node %d profile: %v", i, err)
				}
			}()
		}
	}
	for i := 0; i < cameras; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 2 * time.Second / time.Duration(cameras)) // starts spread over a GOP
			addr := fmt.Sprintf("127.0.0.1:%d", rtsp[i%nodes])
			sent[i], errs[i] = clip.publishRaw(context.Background(), addr, fmt.Sprintf("load%d", i), secrets[i], d, 0, false)
		}(i)
	}
	wg.Wait()
	pg.sample()
	close(stopSampling)
	<-sampled
	res.wall = time.Since(t0).Seconds()
	for i, s := range servers {
		pid, _ := s.pid()
		c := cpuSeconds(pid) - cpu0[i]
		res.serveCPU += c
		res.perNode = append(res.perNode, c)
	}
	res.s3CPU = cpuSeconds(g.Pid()) - s30
	res.pgCPU = pg.total()

	// Graceful stops: every segment cut is committed before counting.
	stopped = true
	for i, s := range servers {
		if err := s.stop(); err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	durable, err := durableSamples(bin, data[0], "--catalog", catalogURL)
	if err != nil {
		return nil, err
	}
	for i := 0; i < cameras; i++ {
		cam := fmt.Sprintf("load%d", i)
		res.sent += sent[i]
		res.durable += durable[cam]
		switch {
		case errs[i] != nil:
			res.errors = append(res.errors, fmt.Sprintf("%s: %v", cam, errs[i]))
		case durable[cam] != sent[i]:
			res.errors = append(res.errors, fmt.Sprintf("%s: sent %d, durable %d", cam, sent[i], durable[cam]))
		default:
			res.zeroLoss++
		}
	}
	return res, nil
}

// nodeKeys gives the node at dir the keys of the node at first (the
// backoffice recipients, the camera pepper) with a signing key of its
// own, as an operator adding a node does.
func nodeKeys(bin, first, dir, work string) error {
	own := filepath.Join(work, "own-"+filepath.Base(dir))
	if out, err := exec.Command(bin, "keygen", "--data", own).CombinedOutput(); err != nil {
		return fmt.Errorf("keygen: %v: %s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(first, "keys"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		src := filepath.Join(first, "keys", e.Name())
		if e.Name() == "node.key" || e.Name() == "node.pub" {
			src = filepath.Join(own, "keys", e.Name())
		}
		blob, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "keys", e.Name()), blob, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// backendCPU follows the CPU of the PostgreSQL backends whose sessions
// carry the benchmark's application_name (the server runs on this
// machine, so /proc has them). A backend's CPU counts from its first
// sample (from zero if it started after the first one); one that ends
// between samples loses at most a second of it.
type backendCPU struct {
	db          *sql.DB
	first, last map[int]float64
	started     bool
}

func newBackendCPU(dsn string) (*backendCPU, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one session of its own, left out by pg_backend_pid
	return &backendCPU{db: db, first: map[int]float64{}, last: map[int]float64{}}, nil
}

func (p *backendCPU) sample() {
	rows, err := p.db.Query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`, benchApp)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			continue
		}
		c := cpuSeconds(pid)
		if math.IsNaN(c) { // it ended
			continue
		}
		if _, seen := p.first[pid]; !seen {
			p.first[pid] = 0
			if !p.started {
				p.first[pid] = c
			}
		}
		p.last[pid] = c
	}
	p.started = true
}

func (p *backendCPU) total() float64 {
	var t float64
	for pid, c := range p.last {
		t += c - p.first[pid]
	}
	return t
}

func (p *backendCPU) close() { p.db.Close() }

// fetchProfile writes a node's CPU profile over the next d to path.
func fetchProfile(port int, d time.Duration, path string) error {
	c := http.Client{Timeout: d + 10*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(d.Seconds())))
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("write profile: %w", err)
	}
	return f.Close()
}
