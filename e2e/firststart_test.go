package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFirstStart: `camvault serve` on a fresh data directory, started as
// `make run` starts it (./bin/camvault serve --data ./data, from the
// directory that holds bin/), prints commands that work as printed. The
// test runs every command of the message in that directory, through the
// shell, changing nothing but the simulator's duration: the user add
// (password on stdin), the simulator, incidents; then an incident of the
// simulated camera is recorded, the printed WHIP endpoint and secret are
// the demo camera's, and the secret is nowhere in the log.
func TestFirstStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// bin/camvault, where make run builds it.
	if err := os.Symlink(camvaultBin, filepath.Join(dir, "bin", "camvault")); err != nil {
		t.Fatal(err)
	}
	rtp, rtcp := evenPortPair(t)
	srv := exec.Command("./bin/camvault", "serve", "--data", "./data",
		"--rtsp", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--rtsp-rtp", fmt.Sprintf("127.0.0.1:%d", rtp), "--rtsp-rtcp", fmt.Sprintf("127.0.0.1:%d", rtcp),
		"--http", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--whip", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--ice-udp", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--transcode-workers", "0")
	srv.Dir = dir
	var mu sync.Mutex
	var logs bytes.Buffer
	srv.Stderr = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			srv.Process.Kill()
			<-exited
		}
	})
	// The message comes before "ready".
	msg := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				msg <- b.String()
				break
			}
			b.WriteString(sc.Text() + "\n")
		}
		for sc.Scan() {
		}
	}()
	var text string
	select {
	case text = <-msg:
	case <-exited:
		t.Fatalf("camvault serve exited at start\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("camvault serve not ready\n%s", logs.String())
	}
	t.Logf("first-start message:\n%s", text)

	// The message's convention: a line indented by exactly two spaces is
	// a command, a trailing backslash continues it on the next line.
	var cmds []string
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
			continue
		}
		c := strings.TrimSpace(l)
		for strings.HasSuffix(c, `\`) && i+1 < len(lines) {
			i++
			c = strings.TrimSuffix(c, `\`) + " " + strings.TrimSpace(lines[i])
		}
		cmds = append(cmds, c)
	}
	find := func(word string) string {
		t.Helper()
		for _, c := range cmds {
			if strings.Contains(c, word) {
				return c
			}
		}
		t.Fatalf("the message prints no %q command:\n%s", word, text)
		return ""
	}
	userAdd, simulate, list, whip := find(" user add "), find(" simulate "), find(" incidents"), find("POST ")
	for _, c := range []string{userAdd, simulate, list} {
		if !strings.Contains(c, "bin/camvault ") {
			t.Errorf("%q: want bin/camvault, the path make run builds", c)
		}
	}
	// The only change to a printed command: the simulator streams 3 s, not
	// the 30 s a person watching it wants.
	if !strings.Contains(simulate, "--duration 30s") {
		t.Fatalf("simulator command %q: want --duration 30s", simulate)
	}
	simulate = strings.Replace(simulate, "--duration 30s", "--duration 3s", 1)

	sh := func(command string, env ...string) (string, string) {
		t.Helper()
		c := exec.Command("sh", "-c", command)
		c.Dir, c.Env = dir, append(os.Environ(), env...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil {
			t.Fatalf("printed command %q: %v\nstdout: %s\nstderr: %s", command, err, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	if out, _ := sh(userAdd, "PASSWORD=a first-hour password"); len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("user add printed %q, want the API token", out)
	}
	sh(simulate)
	var rows []incidentRow
	if err := json.Unmarshal([]byte(mustCamvault(t, "incidents", "--json", "--data", filepath.Join(dir, "data"))), &rows); err != nil ||
		len(rows) != 1 || rows[0].Camera != "sim0" || rows[0].Chunks == 0 {
		t.Fatalf("after the printed simulator command: %v %+v, want one incident of sim0 with chunks", err, rows)
	}
	if out, _ := sh(list); !strings.Contains(out, rows[0].ID) {
		t.Fatalf("printed incidents command lists:\n%s\nwant %s", out, rows[0].ID)
	}

	// POST URL Authorization: Bearer SECRET ...: the endpoint answers the
	// demo camera's secret (a bad offer, 400) where a wrong one is 401.
	f := strings.Fields(whip)
	if len(f) < 5 || f[2] != "Authorization:" || f[3] != "Bearer" {
		t.Fatalf("WHIP line %q", whip)
	}
	post := func(secret string) int {
		req, _ := http.NewRequest("POST", f[1], strings.NewReader("v=0\r\n"))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("printed WHIP endpoint: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(f[4]); code != http.StatusBadRequest {
		t.Errorf("printed WHIP endpoint with the printed secret: %d, want 400 for a bad offer", code)
	}
	if code := post("wrong"); code != http.StatusUnauthorized {
		t.Errorf("printed WHIP endpoint with a wrong secret: %d, want 401", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), f[4]) {
		t.Errorf("the demo camera's secret is in the log:\n%s", logs.String())
	}
}
