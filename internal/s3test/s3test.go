// Package s3test runs a real S3 server with Object Lock for tests:
// versitygw (posix backend, versioning, which Object Lock needs) on
// loopback. camvault talks to it as an ordinary account (role userplus,
// which may create its own lock bucket), as it would to a production
// store: never with the server's root credentials. Under CI=true a
// missing versitygw fails the test; elsewhere it skips.
package s3test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"camvault/internal/testenv"
)

// Credentials of the test account (role userplus: may create buckets).
const (
	AccessKey = "wormuser"
	SecretKey = "wormsecret123"
)

// Gateway is a running versitygw.
type Gateway struct {
	Endpoint string // host:port
	bin      string
	port     int
	admin    int
	cmd      *exec.Cmd
	dir      string
}

var (
	once sync.Once
	gw   *Gateway
	err  error
)

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("CAMVAULT_VERSITYGW")
	if bin == "" {
		bin, _ = exec.LookPath("versitygw")
	}
	if bin == "" {
		testenv.Missing(t, "versitygw (make test builds it: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
	}
	return bin
}

// Start returns the process-wide gateway, starting it on first use.
func Start(t testing.TB) *Gateway {
	t.Helper()
	bin := binary(t)
	once.Do(func() { gw, err = start(bin) })
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// StartPrivate starts a gateway of the test's own, which it may Kill and
// Restart (the shared one of Start must stay up for the other tests); it
// is stopped and its directory removed when the test ends.
func StartPrivate(t testing.TB) *Gateway {
	t.Helper()
	g, err := start(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Kill()
		os.RemoveAll(g.dir)
	})
	return g
}

func start(bin string) (*Gateway, error) {
	dir, err := os.MkdirTemp("", "camvault-s3")
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "versions", "iam"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	g := &Gateway{bin: bin, dir: dir}
	if g.port, err = freePort(); err != nil {
		return nil, err
	}
	if g.admin, err = freePort(); err != nil {
		return nil, err
	}
	g.Endpoint = fmt.Sprintf("127.0.0.1:%d", g.port)
	if err := g.launch(); err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "admin", "--access", "rootak", "--secret", "rootsecret123", "--endpoint-url",
		fmt.Sprintf("http://127.0.0.1:%d", g.admin), "create-user", "--access", AccessKey, "--secret", SecretKey, "--role", "userplus").CombinedOutput()
	if err != nil {
		g.Kill()
		return nil, fmt.Errorf("versitygw create-user: %v: %s", err, out)
	}
	return g, nil
}

// launch starts the process on the gateway's ports and directory and
// waits until it accepts connections.
func (g *Gateway) launch() error {
	cmd := exec.Command(g.bin, "--port", g.Endpoint, "--admin-port", fmt.Sprintf("127.0.0.1:%d", g.admin),
		"--iam-dir", filepath.Join(g.dir, "iam"), "posix", "--versioning-dir", filepath.Join(g.dir, "versions"), filepath.Join(g.dir, "data"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=rootak", "ROOT_SECRET_ACCESS_KEY=rootsecret123")
	if err := cmd.Start(); err != nil {
		return err
	}
	g.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", g.admin), g.Endpoint} {
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				g.Kill()
				return errors.New("versitygw did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Kill ends the gateway's process with SIGKILL, as a crash would, keeping
// its data; Restart brings it back.
func (g *Gateway) Kill() {
	if g.cmd != nil {
		g.cmd.Process.Kill()
		g.cmd.Wait()
		g.cmd = nil
	}
}

// Restart starts a killed gateway again on the same port and data.
func (g *Gateway) Restart() error {
	if g.cmd != nil {
		return errors.New("s3test: gateway still running")
	}
	return g.launch()
}

// Dir is the gateway's data directory: buckets under data/, older object
// versions under versions/.
func (g *Gateway) Dir() string { return g.dir }

// Stop ends the gateway if it was started; call it from TestMain.
func Stop() {
	if gw != nil {
		gw.Kill()
		os.RemoveAll(gw.dir)
	}
}

// NonEnforcing is an S3 endpoint that claims Object Lock, answers 200 to
// its headers, keeps one version per object and deletes whatever it is
// asked to: what the startup self-test must refuse.
func NonEnforcing() http.Handler {
	var mu sync.Mutex
	objects := map[string][]byte{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
		if len(parts) == 1 || parts[1] == "" { // bucket-level requests
			if _, ok := r.URL.Query()["object-lock"]; ok {
				io.WriteString(w, `<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>`)
				return
			}
			if r.Method == http.MethodGet {
				io.WriteString(w, `<ListBucketResult></ListBucketResult>`)
			}
			return
		}
		key := r.URL.Path
		switch r.Method {
		case http.MethodPut:
			if _, ok := r.URL.Query()["legal-hold"]; ok {
				return
			}
			if _, ok := r.URL.Query()["retention"]; ok {
				return
			}
			b, _ := io.ReadAll(r.Body)
			objects[key] = b
			w.Header().Set("ETag", `"00000000000000000000000000000000"`)
			w.Header().Set("x-amz-version-id", "v1")
		case http.MethodDelete:
			delete(objects, key)
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet, http.MethodHead:
			b, ok := objects[key]
			if !ok {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusNotFound)
				if r.Method == http.MethodGet {
					io.WriteString(w, `<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>`)
				}
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("ETag", `"00000000000000000000000000000000"`)
			w.Header().Set("x-amz-version-id", "v1")
			if r.Method == http.MethodGet {
				w.Write(b)
			}
		}
	})
}

// Pid is the gateway's process id (0 while it is killed), for a benchmark
// that reads the store's CPU from /proc.
func (g *Gateway) Pid() int {
	if g.cmd == nil || g.cmd.Process == nil {
		return 0
	}
	return g.cmd.Process.Pid
}
