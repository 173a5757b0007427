// Package e2e runs the real camvault binary against real clients: the
// ffmpeg CLI and gortsplib's client publishing over RTSP.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"camvault/internal/s3test"
	"camvault/internal/testenv"
)

var camvaultBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "camvault-e2e-bin")
	if err != nil {
		panic(err)
	}
	camvaultBin = filepath.Join(dir, "camvault")
	build := exec.Command("go", "build", "-race", "-o", camvaultBin, "camvault/cmd/camvault")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build camvault:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	s3test.Stop()
	os.Exit(code)
}

// requireTool fails under CI and skips elsewhere when a tool is missing.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	return testenv.Require(t, name)[0]
}

// handedOut holds every port freePort has returned in this process: the
// e2e tests run in parallel, and two of them drawing the same free port
// before either binds it made one server fail to start.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a loopback port free for TCP and UDP at the time of
// asking, and never the same one twice in one test run.
func freePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	// Below the kernel's ephemeral range (32768-60999 by default): the
	// package tests running beside e2e bind port 0 all the time, and one of
	// them taking the port between this check and the server's bind made
	// a server fail to start now and then.
	const lo, hi = 20000, 32000
	for i := 0; i < 200; i++ {
		port := lo + rand.IntN(hi-lo)
		if handedOut.ports[port] || handedOut.ports[port^1] {
			// port^1: evenPortPair takes the pair around a port.
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u.Close()
		handedOut.ports[port] = true
		return port
	}
	t.Fatal("no free port")
	return 0
}

// evenPortPair returns p, p+1 free for UDP (RTP/RTCP need an even/odd pair).
func evenPortPair(t testing.TB) (int, int) {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := freePort(t) &^ 1 // Linux hands out odd ports to bind(0)
		ok := true
		for _, q := range []int{p, p + 1} {
			u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			u.Close()
		}
		if ok {
			return p, p + 1
		}
	}
	t.Fatal("no free port pair")
	return 0, 0
}

// camvault runs a CLI command and returns stdout, stderr and exit code.
func camvault(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(camvaultBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run camvault %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func mustCamvault(t testing.TB, args ...string) string {
	t.Helper()
	out, errs, code := camvault(t, args...)
	if code != 0 {
		t.Fatalf("camvault %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// server is a running `camvault serve`.
type server struct {
	t                   testing.TB
	data                string
	rtspPort, rtp, rtcp int
	httpPort            int
	metricsPort         int // /metrics, served there without a credential
	whipPort, icePort   int
	cmd                 *exec.Cmd
	mu                  sync.Mutex
	log                 bytes.Buffer
	exited              chan struct{}
	exitErr             error
	extra               []string
	prefix              []string // runs the binary through this command (e.g. prlimit)
	// bin and env, when set, are the binary to run instead of camvaultBin
	// and what to add to its environment (the crash test's build).
	bin string
	env []string
}

func newServer(t testing.TB, data string, extra ...string) *server {
	t.Helper()
	return newServerVia(t, data, nil, extra...)
}

// newServerVia is newServer with the binary run through prefix, a
// command that execs it (prlimit, so signals still reach camvault).
func newServerVia(t testing.TB, data string, prefix []string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, extra: extra, prefix: prefix}
	s.rtspPort = freePort(t)
	s.rtp, s.rtcp = evenPortPair(t)
	s.httpPort = freePort(t)
	s.metricsPort = freePort(t)
	s.whipPort = freePort(t)
	s.icePort = freePort(t)
	s.start()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *server) start() {
	s.t.Helper()
	if !s.launch() {
		s.t.Fatalf("camvault serve exited at start: %v\n%s", s.exitErr, s.logs())
	}
}

// launch starts serve and waits for its "ready": false when it exited
// before (a crash test's failpoint may kill it during its recovery).
func (s *server) launch() bool {
	t := s.t
	t.Helper()
	args := append([]string{"serve", "--data", s.data, "--no-demo",
		"--rtsp", fmt.Sprintf("127.0.0.1:%d", s.rtspPort),
		"--rtsp-rtp", fmt.Sprintf("127.0.0.1:%d", s.rtp),
		"--rtsp-rtcp", fmt.Sprintf("127.0.0.1:%d", s.rtcp),
		"--http", fmt.Sprintf("127.0.0.1:%d", s.httpPort),
		"--metrics", fmt.Sprintf("127.0.0.1:%d", s.metricsPort),
		"--whip", fmt.Sprintf("127.0.0.1:%d", s.whipPort),
		"--ice-udp", fmt.Sprintf("127.0.0.1:%d", s.icePort),
		"--segment", "2s", "--read-timeout", "5s", "--log-level", "debug",
		// Proxies only where a test asks for them (the flag may be given
		// again in extra): they cost CPU every other test does not need.
		"--transcode-workers", "0",
		// A small reserve and threshold: tests make many data
		// directories, and a machine short of disk must not turn every
		// camera away (TestFullDisk sets its own).
		"--min-free", "64MiB", "--disk-reserve", "4MiB"}, s.extra...)
	bin := camvaultBin
	if s.bin != "" {
		bin = s.bin
	}
	argv := append(append(append([]string{}, s.prefix...), bin), args...)
	s.cmd = exec.Command(argv[0], argv[1:]...)
	if s.env != nil {
		s.cmd.Env = append(os.Environ(), s.env...)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.log.Write(p)
	})
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if sc.Text() == "ready" && !signalled {
				signalled = true
				close(ready)
			}
		}
	}()
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case <-ready:
		return true
	case <-s.exited:
		return false
	case <-time.After(30 * time.Second):
		t.Fatalf("camvault serve not ready\n%s", s.logs())
	}
	return false
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	select {
	case <-s.exited:
		return s.exitErr
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("camvault did not stop within 60 s")
	}
	return s.exitErr
}

func (s *server) whipURL(camera string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/whip/%s", s.whipPort, camera)
}

func (s *server) rtspURL(user, pass, path string) string {
	if user == "" {
		return fmt.Sprintf("rtsp://127.0.0.1:%d/%s", s.rtspPort, path)
	}
	return fmt.Sprintf("rtsp://%s:%s@127.0.0.1:%d/%s", user, pass, s.rtspPort, path)
}

type incidentRow struct {
	Held        bool       `json:"held"`
	RetainUntil *time.Time `json:"retain_until"`
	StartedAt   time.Time  `json:"started_at"`
	ID          string     `json:"id"`
	Camera      string     `json:"camera"`
	Status      string     `json:"status"`
	Chunks      int        `json:"chunks"`
	Samples     int        `json:"samples"` // access units durable
	EndedAt     *time.Time `json:"ended_at"`
}

func incidents(t testing.TB, data string) []incidentRow {
	t.Helper()
	out := mustCamvault(t, "incidents", "--json", "--data", data)
	var rows []incidentRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("incidents --json: %v\n%s", err, out)
	}
	return rows
}

// waitIncidentEnded polls until the camera's latest incident has ended.
func waitIncidentEnded(t testing.TB, s *server, camera string) incidentRow {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, in := range incidents(t, s.data) {
			if in.Camera == camera && in.Status != "open" {
				return in
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no ended incident for %s\n%s", camera, s.logs())
	return incidentRow{}
}

// setupData creates keys and one camera; returns the data dir and secret.
func setupData(t testing.TB, cameras ...string) (string, map[string]string) {
	t.Helper()
	return setupDataAt(t, filepath.Join(t.TempDir(), "data"), cameras...)
}

// setupDataAt is setupData in the data directory data.
func setupDataAt(t testing.TB, data string, cameras ...string) (string, map[string]string) {
	t.Helper()
	mustCamvault(t, "keygen", "--data", data)
	secrets := map[string]string{}
	for _, c := range cameras {
		secrets[c] = strings.TrimSpace(mustCamvault(t, "camera", "add", c, "--officer", "officer "+c, "--data", data))
	}
	return data, secrets
}

func identityPath(data string) string { return filepath.Join(data, "keys", "backoffice.identity") }

// run runs a command and fails with its output on error.
func runCmd(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(errb.String(), 3000))
	}
	return out.Bytes()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var _ = io.Discard
var _ = strconv.Itoa

// exportIncident exports an incident with the identity and returns the
// bundle's directory and its media files (want of them).
func exportIncident(t testing.TB, data, incident string, want int) (string, []string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	files := strings.Fields(mustCamvault(t, "export", incident, "--identity", identityPath(data), "--out", out, "--data", data))
	if len(files) != want {
		t.Fatalf("export files %v, want %d", files, want)
	}
	return out, files
}

// verifyBundle checks an export bundle offline with the identity and the
// node's public key, down to its media: streams copied from the camera
// packet by packet, derived ones against the sealed originals.
func verifyBundle(t testing.TB, data, bundle string) string {
	t.Helper()
	o, e, code := camvault(t, "verify", bundle, "--identity", identityPath(data), "--pubkey", filepath.Join(data, "keys", "node.pub"))
	if code != 0 || !strings.Contains(o, "result: OK") || !strings.Contains(o, "checked: incident") {
		t.Fatalf("verify export: exit %d\n%s%s", code, o, e)
	}
	return o
}
