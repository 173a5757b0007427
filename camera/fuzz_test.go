package camera_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"camvault/camera"
)

// FuzzCameraEvent: whatever an authenticated camera posts as an event is
// either recorded as one alert (202) or refused with a client error, never
// a panic or a server error, and a refused event records nothing.
func FuzzCameraEvent(f *testing.F) {
	for _, seed := range []string{
		`{"type":"warning","n":1}`, `{"type":"location","lat":52.37,"lon":4.89,"accuracy":12}`,
		`{"type":"warning","n":3}`, `{"type":"location","lat":91,"lon":0}`, `{"type":"x"}`, `[]`, `{"type":"warning","n":1}{}`,
		`{"type":"warning","n":1,"extra":true}`, strings.Repeat(" ", 5000),
	} {
		f.Add(seed)
	}
	sink := &memEvents{}
	mux := http.NewServeMux()
	mux.Handle(camera.EventPattern, camera.NewEventHandler(staticAuth{"cam1": "secret1"}, sink, slog.New(slog.NewTextHandler(io.Discard, nil)), nil))
	f.Fuzz(func(t *testing.T, body string) {
		before := len(sink.got)
		req := httptest.NewRequest(http.MethodPost, "/cameras/cam1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer secret1")
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		recorded := len(sink.got) - before
		switch rec.Code {
		case http.StatusAccepted:
			if recorded != 1 {
				t.Fatalf("202 with %d events recorded", recorded)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
			if recorded != 0 {
				t.Fatalf("%d with %d events recorded", rec.Code, recorded)
			}
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
	})
}
