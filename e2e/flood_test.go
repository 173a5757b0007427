package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
)

// limitFiles is a command prefix that runs a program with its open-file
// limit (soft and hard) at n: prlimit where util-linux has it, else the
// shell's ulimit. Both exec the program, so signals still reach it.
func limitFiles(n int) []string {
	if p, err := exec.LookPath("prlimit"); err == nil {
		return []string{p, fmt.Sprintf("--nofile=%d:%d", n, n)}
	}
	return []string{"sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, n)}
}

// floodConn is one hostile connection and what became of it.
type floodConn struct {
	name   string
	dialed time.Time
	open   time.Duration // how long the server kept it open; -1: still open at the end
}

// flood opens n connections to addr from the loopback address src(i)
// and, when slow, sends a request there a byte per second; each is
// watched until the server closes it or watchFor passes.
func flood(t *testing.T, addr, name string, n int, src func(int) string, slow bool, watchFor time.Duration, wg *sync.WaitGroup) []*floodConn {
	t.Helper()
	out := make([]*floodConn, 0, n)
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src(i))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		fc := &floodConn{name: name, dialed: time.Now(), open: -1}
		out = append(out, fc)
		if err != nil {
			// The old listener, once dead, refuses the connection itself.
			fc.open = 0
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if slow {
				go func() {
					for _, b := range []byte("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: " + strings.Repeat("s", 200)) {
						if _, err := c.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(time.Second)
					}
				}()
			}
			c.SetReadDeadline(fc.dialed.Add(watchFor))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // still open: fc.open stays -1
			}
			fc.open = time.Since(fc.dialed)
		}()
	}
	return out
}

func healthz(t *testing.T, s *server) (int, string) {
	t.Helper()
	return probe(t, s, "/healthz")
}

// probe GETs path (/healthz, /readyz) on the backoffice listener.
func probe(t *testing.T, s *server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.httpPort, path))
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, tail(s.logs(), 4000))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRTSPFloodIdleAndSlow: with the open-file limit at 300, one camera
// recording, 400 idle and 20 slow-loris (a byte a second) connections on
// the RTSP port and 100 idle and 10 slow ones on the WHIP port must not
// switch ingest off: the camera's recording loses nothing, the hostile
// connections are refused at once (caps in total and per address) or
// closed once the time to authenticate has passed, a new camera connects
// afterwards, and /healthz says ok because it is. Before, the server hit
// EMFILE, gortsplib's server ended on that accept error, the camera was
// cut off, every later camera refused, and /healthz still said ok.
func TestRTSPFloodIdleAndSlow(t *testing.T) {
	const (
		fileLimit   = 300
		authTimeout = 10 * time.Second // serve's default, for RTSP
		whipHeaders = 5 * time.Second  // the WHIP listener's ReadHeaderTimeout
		slack       = 3 * time.Second
		watchFor    = authTimeout + 8*time.Second
	)
	c := testClip(t, 20)
	short := testClip(t, 5)
	data, secrets := setupData(t, "cam1", "cam2")
	s := newServerVia(t, data, limitFiles(fileLimit))
	if !strings.Contains(s.logs(), fmt.Sprintf(`msg="open-file limit and listener limits" soft=%d`, fileLimit)) {
		t.Errorf("the open-file limit is not logged at start:\n%s", tail(s.logs(), 3000))
	}

	cam := newRTSPCamera(t, c, false)
	camErr := make(chan error, 1)
	go func() { camErr <- cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP) }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.logs(), `msg="camera publishing" camera=cam1`) {
		if time.Now().After(deadline) {
			t.Fatalf("cam1 not publishing\n%s", tail(s.logs(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // recording: its first segment is being cut

	rtspAddr := fmt.Sprintf("127.0.0.1:%d", s.rtspPort)
	whipAddr := fmt.Sprintf("127.0.0.1:%d", s.whipPort)
	var wg sync.WaitGroup
	var conns []*floodConn
	// Slow ones first, each from an address of its own (all admitted),
	// then 100 idle from one address (64 admitted, the cap per address
	// refuses the rest), then 300 idle from 30 addresses, 10 each (the cap
	// in total refuses what is over it).
	conns = append(conns, flood(t, rtspAddr, "rtsp slow", 20, func(i int) string { return fmt.Sprintf("127.0.3.%d", 1+i) }, true, watchFor, &wg)...)
	conns = append(conns, flood(t, rtspAddr, "rtsp idle, one address", 100, func(int) string { return "127.0.2.1" }, false, watchFor, &wg)...)
	conns = append(conns, flood(t, rtspAddr, "rtsp idle", 300, func(i int) string { return fmt.Sprintf("127.0.1.%d", 1+i/10) }, false, watchFor, &wg)...)
	conns = append(conns, flood(t, whipAddr, "whip slow", 10, func(i int) string { return fmt.Sprintf("127.0.5.%d", 1+i) }, true, watchFor, &wg)...)
	conns = append(conns, flood(t, whipAddr, "whip idle", 100, func(i int) string { return fmt.Sprintf("127.0.4.%d", 1+i/10) }, false, watchFor, &wg)...)

	// While the flood holds its connections the node is whole, and says so.
	time.Sleep(2 * time.Second)
	if code, body := healthz(t, s); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz during the flood: %d %q", code, body)
	}
	wg.Wait()

	refused, timedOut := map[string]int{}, map[string]int{}
	for _, fc := range conns {
		limit := authTimeout
		if strings.HasPrefix(fc.name, "whip") {
			limit = whipHeaders
		}
		switch {
		case fc.open < 0:
			t.Fatalf("%s connection still open %v after it connected", fc.name, watchFor)
		case fc.open > limit+slack:
			t.Fatalf("%s connection closed after %v, want within %v", fc.name, fc.open.Round(time.Millisecond), limit+slack)
		case fc.open < time.Second:
			refused[fc.name]++
		case fc.open >= limit-time.Second:
			timedOut[fc.name]++
		}
	}
	t.Logf("closed at once: %v; at the timeout: %v", refused, timedOut)
	for _, name := range []string{"rtsp idle", "rtsp idle, one address", "whip idle"} {
		if refused[name] == 0 || timedOut[name] == 0 {
			t.Errorf("%s: %d refused at once, %d closed at the timeout; want some of each (caps and timeout)", name, refused[name], timedOut[name])
		}
	}
	for name, n := range map[string]int{"rtsp slow": 20, "whip slow": 10} {
		if timedOut[name] != n {
			t.Errorf("%s: %d of %d closed at the timeout (%d at once)", name, timedOut[name], n, refused[name])
		}
	}
	logs := s.logs()
	for _, want := range []string{`msg="connection refused" listener=rtsp`, `msg="connection closed: not authenticated in time" listener=rtsp`,
		`msg="connection refused" listener=whip`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}

	// A camera that connects now is recorded, while cam1 goes on.
	cam2 := newRTSPCamera(t, short, false)
	if err := cam2.run(s.rtspURL("cam2", secrets["cam2"], "cam2"), gortsplib.TransportTCP); err != nil {
		t.Fatalf("a new camera after the flood: %v\n%s", err, tail(s.logs(), 4000))
	}
	if inc := waitIncidentEnded(t, s, "cam2"); inc.Chunks < 2 {
		t.Fatalf("cam2 after the flood: %d chunks", inc.Chunks)
	}

	if err := <-camErr; err != nil {
		t.Fatalf("cam1 cut off during the flood: %v\n%s", err, tail(s.logs(), 4000))
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Status != "closed" {
		t.Errorf("cam1's incident %s, want closed (TEARDOWN)", inc.Status)
	}
	// Every picture cam1 sent is in its export, decoded identically: no loss.
	checkExport(t, s, inc, c)
	if strings.Contains(s.logs(), "rtsp listener stopped") {
		t.Errorf("the RTSP listener stopped during the flood:\n%s", tail(s.logs(), 4000))
	}
	if code, body := healthz(t, s); code != http.StatusOK {
		t.Errorf("healthz after the flood: %d %q", code, body)
	}
}
