package server

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort returns a loopback port free for TCP and UDP at the time of asking.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

// evenPortPair returns p, p+1, free for UDP on every interface (RTP and
// RTCP need an even/odd pair).
func evenPortPair(t *testing.T) (int, int) {
	t.Helper()
	for range 100 {
		p := freePort(t) &^ 1
		ok := true
		for _, q := range []int{p, p + 1} {
			u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", q))
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

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// open opens a node on a new data directory; the caller starts it.
func open(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
	}
	cfg.SweepEvery, cfg.AuditAnchorEvery = -1, -1
	srv, err := Open(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestUDPListenersTakeTheirTCPListenersHost: RTSP's RTP and RTCP ports
// and WHIP's ICE port, given without a host, bind the host of --rtsp and
// --whip, not every interface: with --rtsp on 127.0.0.1 the RTP port is
// taken on 127.0.0.1 and free on 127.0.0.2.
func TestUDPListenersTakeTheirTCPListenersHost(t *testing.T) {
	rtp, rtcp := evenPortPair(t)
	ice := freePort(t)
	srv := open(t, Config{RTSPAddress: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		UDPRTPAddress: fmt.Sprintf(":%d", rtp), UDPRTCPAddress: fmt.Sprintf(":%d", rtcp),
		WHIPAddress: fmt.Sprintf("127.0.0.1:%d", freePort(t)), ICEUDPAddress: fmt.Sprintf(":%d", ice),
		HTTPAddress: "127.0.0.1:0"})
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	for _, port := range []int{rtp, rtcp} {
		if u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			u.Close()
			t.Errorf("UDP 127.0.0.1:%d is free: the RTSP server does not listen there", port)
		}
		// Bound to every interface, the port would be taken on 127.0.0.2 too.
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.2:%d", port))
		if err != nil {
			t.Errorf("UDP port %d is taken beyond --rtsp's host: %v", port, err)
			continue
		}
		u.Close()
	}
	if got, want := srv.WHIP.ICEUDPAddr(), fmt.Sprintf("127.0.0.1:%d", ice); got != want {
		t.Errorf("ICE UDP bound %q, want %q (--whip's host)", got, want)
	}
}

// TestSameHost: the rule itself, for the cases a node's start does not
// show above.
func TestSameHost(t *testing.T) {
	for _, c := range []struct {
		addr, like string
		ipv4Only   bool
		want       string
	}{
		{":8000", "127.0.0.1:18554", false, "127.0.0.1:8000"},
		{":8000", ":8554", false, ":8000"},
		{":8000", "0.0.0.0:8554", false, "0.0.0.0:8000"},
		{"0.0.0.0:8000", "127.0.0.1:8554", false, "0.0.0.0:8000"}, // a host given is kept
		{"10.0.0.5:8000", "127.0.0.1:8554", false, "10.0.0.5:8000"},
		{":8000", "[::1]:8554", false, "[::1]:8000"},
		{":8189", "[::1]:8889", true, ":8189"}, // ICE is IPv4 only
		{":8189", "cam.example:8889", true, "cam.example:8189"},
		{"", "127.0.0.1:8554", false, ""}, // off stays off
		{"8000", "127.0.0.1:8554", false, "8000"},
	} {
		if got := sameHost(c.addr, c.like, c.ipv4Only); got != c.want {
			t.Errorf("sameHost(%q, %q, %v) = %q, want %q", c.addr, c.like, c.ipv4Only, got, c.want)
		}
	}
}

// TestFailedStartClosesCleanly: a listener whose port is taken fails
// Start with an error naming that address, and Close afterwards (what
// serve does) neither panics nor fails. gortsplib's Close dereferenced
// state its failed Start never made when the RTP port was taken.
func TestFailedStartClosesCleanly(t *testing.T) {
	rtp, rtcp := evenPortPair(t)
	type taken struct {
		name, network string
		port          int
	}
	ports := map[string]int{"rtsp": freePort(t), "whip": freePort(t), "ice": freePort(t), "http": freePort(t), "metrics": freePort(t)}
	for _, c := range []taken{
		{"rtsp", "tcp", ports["rtsp"]}, {"rtp", "udp", rtp}, {"rtcp", "udp", rtcp}, {"whip", "tcp", ports["whip"]},
		{"ice", "udp", ports["ice"]}, {"http", "tcp", ports["http"]}, {"metrics", "tcp", ports["metrics"]},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", c.port)
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
			at := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
			srv := open(t, Config{RTSPAddress: at(ports["rtsp"]), UDPRTPAddress: at(rtp), UDPRTCPAddress: at(rtcp),
				WHIPAddress: at(ports["whip"]), ICEUDPAddress: at(ports["ice"]), HTTPAddress: at(ports["http"]),
				MetricsAddress: at(ports["metrics"])})
			err = srv.Start()
			if err == nil {
				srv.Close()
				t.Fatalf("started with %s taken", addr)
			}
			if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "address already in use") {
				t.Errorf("error %q does not name %s in use", err, addr)
			}
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Close after the failed Start panicked: %v", p)
					}
				}()
				if err := srv.Close(); err != nil {
					t.Errorf("Close after the failed Start: %v", err)
				}
			}()
			// Everything the failed Start opened was closed: the ports
			// it had bound before the failure are free again.
			for name, p := range ports {
				if p != c.port && name != "ice" {
					freed(t, "tcp", at(p))
				}
			}
			for _, p := range []int{rtp, rtcp, ports["ice"]} {
				if p != c.port {
					freed(t, "udp", at(p))
				}
			}
		})
	}
}

// freed fails unless addr can be bound within a second: a listener's
// goroutine may take a moment to let go of a socket it was told to close.
func freed(t *testing.T, network, addr string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var c io.Closer
		if network == "tcp" {
			c, err = net.Listen(network, addr)
		} else {
			c, err = net.ListenPacket(network, addr)
		}
		if err == nil {
			c.Close()
			return
		}
	}
	t.Errorf("%s %s still bound after the failed start: %v", network, addr, err)
}

// get fetches url with an optional bearer token.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsNeedACredential: /metrics on the backoffice listener answers
// 401 without the metrics token (always, when none is configured), and
// 200 with it; the --metrics listener answers without a credential unless
// a token is configured.
func TestMetricsNeedACredential(t *testing.T) {
	const token = "a-metrics-token-0123456789"
	for _, c := range []struct {
		name  string
		token string
	}{{"no token", ""}, {"token", token}} {
		t.Run(c.name, func(t *testing.T) {
			srv := open(t, Config{RTSPAddress: "127.0.0.1:0", WHIPAddress: "-", HTTPAddress: "127.0.0.1:0",
				MetricsAddress: "127.0.0.1:0", MetricsToken: c.token})
			defer srv.Close()
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			backoffice, metrics := "http://"+srv.HTTPAddr()+"/metrics", "http://"+srv.MetricsAddr()+"/metrics"
			for _, tok := range []string{"", "wrong-token-0123456789", token[:len(token)-1]} {
				if code, body := get(t, backoffice, tok); code != http.StatusUnauthorized || strings.Contains(body, "camvault_") {
					t.Errorf("backoffice /metrics with %q: %d, want 401 and no metrics\n%.200s", tok, code, body)
				}
			}
			if c.token != "" {
				if code, body := get(t, backoffice, c.token); code != http.StatusOK || !strings.Contains(body, "camvault_") {
					t.Errorf("backoffice /metrics with the token: %d\n%.200s", code, body)
				}
				if code, _ := get(t, metrics, ""); code != http.StatusUnauthorized {
					t.Errorf("metrics listener without the token configured for it: %d, want 401", code)
				}
			}
			if code, body := get(t, metrics, c.token); code != http.StatusOK || !strings.Contains(body, "camvault_") {
				t.Errorf("metrics listener: %d\n%.200s", code, body)
			}
			// The metrics listener serves nothing of the backoffice.
			if code, _ := get(t, "http://"+srv.MetricsAddr()+"/api/v1/session", ""); code != http.StatusNotFound {
				t.Errorf("metrics listener serves /api/v1/session: %d, want 404", code)
			}
			if code, _ := get(t, "http://"+srv.HTTPAddr()+"/healthz", ""); code != http.StatusOK {
				t.Errorf("/healthz: %d, want 200 without a credential", code)
			}
		})
	}
}

// ownerOnly walks dir and reports every file or directory with a group
// or other permission bit.
func ownerOnly(t *testing.T, dir string) {
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
	if n < 8 {
		t.Fatalf("only %d entries under %s", n, dir)
	}
}

// TestDataDirOwnerOnly: a node's first start creates its data directory
// (keys, the catalog with its -wal and -shm files, the chunk store with an
// anchored audit head) without any group or other permission, under the
// permissive umask a process usually inherits: the modes are camvault's
// own, not the umask's.
func TestDataDirOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	data := filepath.Join(t.TempDir(), "data")
	srv := open(t, Config{DataDir: data, RTSPAddress: "127.0.0.1:0", WHIPAddress: "-", HTTPAddress: "127.0.0.1:0"})
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	if _, err := srv.Catalog.CameraCount(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"catalog.db-wal", "catalog.db-shm"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("%s: %v (the test expects SQLite's WAL files while the node runs)", f, err)
		}
	}
	ownerOnly(t, data)
	if err := srv.Close(); err != nil { // anchors the audit trail's head in the store
		t.Fatal(err)
	}
	ownerOnly(t, data)
}
