package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
)

// serveUntilExit runs `camvault serve` with args, expecting it to stop by
// itself; it fails the test if serve is still running after a minute (it
// started although it should not have).
func serveUntilExit(t *testing.T, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, camvaultBin, append([]string{"serve"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("serve %v did not exit: it started\nstdout: %s\nstderr: %s", args, out.String(), errb.String())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run serve: %v", err)
	}
	return errb.String(), 0
}

// TestStartupPortTaken: with any one of serve's listening ports already
// taken (RTSP, RTP, RTCP, WHIP, ICE UDP, the backoffice, the metrics
// listener), serve exits 2 with one line naming the address in use, and
// never panics. With the RTP or RTCP port taken it used to panic in
// gortsplib's Close.
func TestStartupPortTaken(t *testing.T) {
	data, _ := setupData(t)
	rtp, rtcp := evenPortPair(t)
	ports := map[string]int{"rtsp": freePort(t), "whip": freePort(t), "ice": freePort(t), "http": freePort(t), "metrics": freePort(t)}
	at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	args := []string{"--data", data, "--no-demo", "--transcode-workers", "0",
		"--rtsp", at(ports["rtsp"]), "--rtsp-rtp", at(rtp), "--rtsp-rtcp", at(rtcp),
		"--whip", at(ports["whip"]), "--ice-udp", at(ports["ice"]),
		"--http", at(ports["http"]), "--metrics", at(ports["metrics"])}
	for _, c := range []struct {
		name, network string
		port          int
	}{
		{"rtsp", "tcp", ports["rtsp"]}, {"rtp", "udp", rtp}, {"rtcp", "udp", rtcp},
		{"whip", "tcp", ports["whip"]}, {"ice-udp", "udp", ports["ice"]},
		{"http", "tcp", ports["http"]}, {"metrics", "tcp", ports["metrics"]},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := at(c.port)
			var hold io.Closer
			var err error
			if c.network == "tcp" {
				hold, err = net.Listen("tcp", addr)
			} else {
				hold, err = net.ListenPacket("udp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer hold.Close()
			stderr, code := serveUntilExit(t, args...)
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
				t.Fatalf("serve panicked with %s %s taken:\n%s", c.network, addr, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if code != 2 || !strings.HasPrefix(last, "camvault: ") || !strings.Contains(last, addr) ||
				!strings.Contains(last, "address already in use") {
				t.Fatalf("%s %s taken: exit %d, last line %q; want exit 2 and one line naming %s in use\n%s",
					c.network, addr, code, last, addr, stderr)
			}
			t.Logf("%s %s taken: %s", c.network, addr, last)
			if n := strings.Count(stderr, "camvault: "); n != 1 {
				t.Errorf("%d lines of cause, want 1:\n%s", n, stderr)
			}
		})
	}
}

// ownerOnlyTree walks dir and fails on every file or directory with a
// group or other permission bit; it returns how many entries it saw.
func ownerOnlyTree(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, open to group or others", path, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStartupDataDirOwnerOnly: after keygen, camera add and a short
// recording (originals, proxies, thumbnails, checkpoints, the audit
// trail's anchored head at shutdown), nothing under the data directory
// has a group or other permission bit: the catalog and its -wal and -shm
// files included, which were 0644. And /metrics on the backoffice
// listener needs the metrics token, while the --metrics listener serves
// whoever holds the token too.
func TestStartupDataDirOwnerOnly(t *testing.T) {
	c := testClip(t, 3)
	data, secrets := setupData(t, "cam1")
	const token = "e2e-metrics-token-0123456789"
	tokenFile := filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, data, "--transcode-workers", "1", "--metrics-token-file", tokenFile)
	cam := newRTSPCamera(t, c, false)
	if err := cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP); err != nil {
		t.Fatal(err)
	}
	if inc := waitIncidentEnded(t, s, "cam1"); inc.Chunks == 0 {
		t.Fatalf("no chunks recorded: %+v", inc)
	}

	scrape := func(port int, tok string) (int, string) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := scrape(s.httpPort, ""); code != http.StatusUnauthorized || strings.Contains(body, "camvault_") {
		t.Errorf("backoffice /metrics without a credential: %d, want 401\n%.300s", code, body)
	}
	for _, port := range []int{s.httpPort, s.metricsPort} {
		if code, body := scrape(port, token); code != http.StatusOK || !strings.Contains(body, `camvault_pipeline_items_total{stage="commit"}`) {
			t.Errorf("/metrics on port %d with the token: %d\n%.300s", port, code, body)
		}
	}

	for _, f := range []string{"catalog.db", "catalog.db-wal", "catalog.db-shm"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	ownerOnlyTree(t, data)
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, s.logs())
	}
	if n := ownerOnlyTree(t, data); n < 20 {
		t.Fatalf("only %d entries under %s: the run wrote less than expected", n, data)
	}
}
