package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"camvault/camera"
	"camvault/internal/diskspace"
)

// TestBelowMinFreeTheNodeSaysSo: a node whose disk is below --min-free
// (here: 100%, so any disk is) keeps its reserve file (owner-only), raises
// storage.full once, answers 503 with the reason on /healthz and /readyz,
// and its recorder refuses a camera without an incident to continue,
// with the storage-full error; before, nothing of this existed and
// /healthz said ok.
func TestBelowMinFreeTheNodeSaysSo(t *testing.T) {
	s := open(t, Config{MinFree: diskspace.Threshold{Percent: 100}, DiskReserve: 1 << 20})
	defer s.Close()
	fi, err := os.Stat(s.dir.Reserve())
	if err != nil || fi.Size() != 1<<20 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("reserve: %v, %v", fi, err)
	}
	for path, serve := range map[string]http.HandlerFunc{"/healthz": s.serveHealthz, "/readyz": s.serveReadyz} {
		w := httptest.NewRecorder()
		serve(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "storage full: not accepting new incidents") {
			t.Errorf("%s below min-free: %d %q", path, w.Code, w.Body.String())
		}
	}
	err = s.Recorder.Admit(context.Background(), camera.Camera{ID: "cam1"})
	if !errors.Is(err, diskspace.ErrFull) {
		t.Errorf("Admit below min-free: %v, want ErrFull", err)
	}
	s.space.Check() // no change: no second alert
	alerts, err := s.Catalog.AlertsAfter(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Type != AlertStorageFull || alerts[0].Data["min_free_bytes"] == nil {
		t.Errorf("alerts %+v, want one storage.full", alerts)
	}
}

// TestReadyzWhileShuttingDown: a healthy node is ready, and not once its
// Close has begun.
func TestReadyzWhileShuttingDown(t *testing.T) {
	s := &Server{}
	get := func() int {
		w := httptest.NewRecorder()
		s.serveReadyz(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("healthy node: /readyz %d", code)
	}
	s.closing.Store(true)
	if code := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("shutting down: /readyz %d, want 503", code)
	}
}
