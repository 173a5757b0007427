package server

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"camvault/internal/netguard"
)

// TestHealthzSaysWhatIsDown: /healthz answers 503 with the reason while a
// listener is down (a stopped RTSP server once went unnoticed behind a
// constant "ok"), and ok otherwise.
func TestHealthzSaysWhatIsDown(t *testing.T) {
	var down error
	s := &Server{healthChecks: []func() error{func() error { return down }}}
	get := func() (int, string) {
		w := httptest.NewRecorder()
		s.serveHealthz(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthy node: %d %q", code, body)
	}
	down = errors.New("rtsp listener on :8554 stopped: accept: too many open files")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "rtsp listener on :8554 stopped") {
		t.Fatalf("listener down: %d %q, want 503 with the reason", code, body)
	}
}

// TestFileShares: the listeners' caps in total stay below the open-file
// limit with room for the node itself, whatever the limit.
func TestFileShares(t *testing.T) {
	for _, limit := range []uint64{64, 300, 1024, 20000, 1 << 20} {
		rtsp, whip, bo := fileShares(limit)
		if limit >= 300 && uint64(rtsp+whip+bo)+fileReserve > limit {
			t.Errorf("limit %d: caps %d+%d+%d leave less than %d descriptors", limit, rtsp, whip, bo, fileReserve)
		}
		if rtsp < minDefaultListener || rtsp > maxDefaultRTSP || whip > maxDefaultWHIP || bo > maxDefaultBackoff {
			t.Errorf("limit %d: caps %d, %d, %d out of bounds", limit, rtsp, whip, bo)
		}
	}
	if rtsp, _, _ := fileShares(300); rtsp < 50 {
		t.Errorf("limit 300: RTSP cap %d, want room for some cameras", rtsp)
	}
	l := resolveLimits(netguard.Limits{MaxConns: -1, MaxPerAddr: 0}, 100, DefaultRTSPPerAddr)
	if l.MaxConns != 0 || l.MaxPerAddr != DefaultRTSPPerAddr {
		t.Errorf("resolveLimits: %+v, want no cap in total and the default per address", l)
	}
}

// TestListenerMetrics: refusals show in /metrics per listener and reason.
func TestListenerMetrics(t *testing.T) {
	s := &Server{backofficeGuard: netguard.New("backoffice", netguard.Limits{MaxConns: 1}, nil)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := s.backofficeGuard.Wrap(l)
	defer gl.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := gl.Accept(); err == nil {
			accepted <- c
		}
		gl.Accept() // refuses the second and waits for a third that never comes
	}()
	for range 2 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	defer (<-accepted).Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newGuardCollector(s))
	deadline := time.Now().Add(2 * time.Second)
	for {
		if n := refused(t, reg); n == 1 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("camvault_listener_refused_total{backoffice,max_conns} = %v, want 1", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refused is the backoffice's max_conns refusals as reg exports them.
func refused(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "camvault_listener_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["listener"] == "backoffice" && labels["reason"] == "max_conns" {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatal("no camvault_listener_refused_total for the backoffice")
	return 0
}
