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

// Start returns the process-wide gateway, starting it on first use.
func Start(t testing.TB) *Gateway {
	t.Helper()
	bin := os.Getenv("CAMVAULT_VERSITYGW")
	if bin == "" {
		bin, _ = exec.LookPath("versitygw")
	}
	if bin == "" {
		testenv.Missing(t, "versitygw (make test builds it: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
	}
	once.Do(func() { gw, err = start(bin) })
	if err != nil {
		t.Fatal(err)
	}
	return gw
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
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--admin-port", fmt.Sprintf("127.0.0.1:%d", admin),
		"--iam-dir", filepath.Join(dir, "iam"), "posix", "--versioning-dir", filepath.Join(dir, "versions"), filepath.Join(dir, "data"))
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=rootak", "ROOT_SECRET_ACCESS_KEY=rootsecret123")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", admin))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, errors.New("versitygw did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := exec.Command(bin, "admin", "--access", "rootak", "--secret", "rootsecret123", "--endpoint-url",
		fmt.Sprintf("http://127.0.0.1:%d", admin), "create-user", "--access", AccessKey, "--secret", SecretKey, "--role", "userplus").CombinedOutput()
	if err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("versitygw create-user: %v: %s", err, out)
	}
	return &Gateway{Endpoint: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}, nil
}

// Stop ends the gateway if it was started; call it from TestMain.
func Stop() {
	if gw != nil {
		gw.cmd.Process.Kill()
		gw.cmd.Wait()
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
