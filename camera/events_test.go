package camera_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"camvault/camera"
)

type staticAuth map[string]string // camera -> secret

func (a staticAuth) Authenticate(_ context.Context, id, secret string) (camera.Camera, error) {
	if want, ok := a[id]; ok && want == secret {
		return camera.Camera{ID: id}, nil
	}
	return camera.Camera{}, camera.ErrUnauthorized
}

type memEvents struct {
	mu  sync.Mutex
	got []string
}

func (m *memEvents) CameraEvent(_ context.Context, cam camera.Camera, typ string, _ time.Time, data map[string]any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, fmt.Sprintf("%s %s %v", cam.ID, typ, data))
	return nil
}

// startEvents serves the events endpoint as a listener mounts it; the
// refusals it sees are counted.
func startEvents(t *testing.T, sink camera.EventSink) (url string, refused func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	count := func(*http.Request, int, string) {
		mu.Lock()
		n++
		mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.Handle(camera.EventPattern, camera.NewEventHandler(staticAuth{"cam1": "secret1", "cam2": "secret2"}, sink,
		slog.New(slog.NewTextHandler(io.Discard, nil)), count))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/cameras/cam1/events", func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

func post(t *testing.T, url, token, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Cameras post their spoken warnings and locations with their bearer;
// anything else is refused and nothing is recorded.
func TestCameraEvents(t *testing.T) {
	ev := &memEvents{}
	url, refused := startEvents(t, ev)
	for _, tc := range []struct {
		name, token, ctype, body string
		want                     int
	}{
		{"warning 1", "secret1", "application/json", `{"type":"warning","n":1}`, http.StatusAccepted},
		{"warning 2", "secret1", "application/json", `{"type":"warning","n":2}`, http.StatusAccepted},
		{"location", "secret1", "application/json", `{"type":"location","lat":52.37,"lon":4.89,"accuracy":8}`, http.StatusAccepted},
		{"assist", "secret1", "application/json", `{"type":"assist"}`, http.StatusAccepted},
		{"assist with a number", "secret1", "application/json", `{"type":"assist","n":1}`, http.StatusBadRequest},
		{"no bearer", "", "application/json", `{"type":"warning","n":1}`, http.StatusUnauthorized},
		{"another camera's secret", "secret2", "application/json", `{"type":"warning","n":1}`, http.StatusUnauthorized},
		{"not json", "secret1", "text/plain", `warning`, http.StatusUnsupportedMediaType},
		{"third warning", "secret1", "application/json", `{"type":"warning","n":3}`, http.StatusBadRequest},
		{"unknown type", "secret1", "application/json", `{"type":"panic"}`, http.StatusBadRequest},
		{"unknown field", "secret1", "application/json", `{"type":"warning","n":1,"x":1}`, http.StatusBadRequest},
		{"latitude out of range", "secret1", "application/json", `{"type":"location","lat":91,"lon":4}`, http.StatusBadRequest},
		{"location without lon", "secret1", "application/json", `{"type":"location","lat":52}`, http.StatusBadRequest},
		{"two objects", "secret1", "application/json", `{"type":"warning","n":1}{"type":"warning","n":2}`, http.StatusBadRequest},
		{"truncated", "secret1", "application/json", `{"type":"warn`, http.StatusBadRequest},
		{"oversized", "secret1", "application/json", `{"type":"warning","n":1,"pad":"` + strings.Repeat("x", 8<<10) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if code, body := post(t, url, tc.token, tc.ctype, tc.body); code != tc.want {
			t.Errorf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
	}
	ev.mu.Lock()
	got := append([]string(nil), ev.got...)
	ev.mu.Unlock()
	want := []string{"cam1 camera.warning map[n:1]", "cam1 camera.warning map[n:2]", "cam1 camera.location map[accuracy:8 lat:52.37 lon:4.89]", "cam1 incident.assist map[urgent:true]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("recorded %q, want %q", got, want)
	}
	if n := refused(); n != 12 {
		t.Fatalf("%d refusals seen by the listener, want 12", n)
	}
	// A flood is cut off after a burst.
	limited := false
	for i := 0; i < 30 && !limited; i++ {
		code, _ := post(t, url, "secret1", "application/json", `{"type":"warning","n":1}`)
		limited = code == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("30 events in a row were all accepted")
	}
}

// A node that records no events says so, after checking the bearer.
func TestCameraEventsNotRecorded(t *testing.T) {
	url, _ := startEvents(t, nil)
	if code, _ := post(t, url, "nope", "application/json", `{"type":"warning","n":1}`); code != http.StatusUnauthorized {
		t.Errorf("wrong bearer: %d, want 401", code)
	}
	if code, _ := post(t, url, "secret1", "application/json", `{"type":"warning","n":1}`); code != http.StatusNotImplemented {
		t.Errorf("no sink: %d, want 501", code)
	}
}
