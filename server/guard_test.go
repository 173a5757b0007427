package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
