package backoffice_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
)

// An officer's assist request arrives over SSE as an urgent
// incident.assist about the incident the camera records; the live page
// has the place it is shown at the top of.
func TestAssistIsUrgent(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	tok := addStaff(t, n, "olga", backoffice.RoleOperator)
	inc := newIncident(t, n)
	sse, code := dialSSE(t, n.eventsURL(), tok, "")
	if code != http.StatusOK {
		t.Fatalf("sse: %d", code)
	}
	defer sse.close()
	n.postEvent(t, `{"type":"assist"}`)
	evs := sse.until(t, "incident.assist", 5*time.Second)
	var a struct {
		Camera, Incident string
		Data             map[string]any
	}
	if err := json.Unmarshal([]byte(evs[len(evs)-1].Data), &a); err != nil {
		t.Fatal(err)
	}
	if a.Camera != camID || a.Incident != inc || a.Data["urgent"] != true || a.Data["officer"] != "officer one" {
		t.Fatalf("assist alert %+v, want urgent, about %s", a, inc)
	}
	if code, body := newClient(t, n).do("GET", "/", tok, "", ""); code != http.StatusOK || !strings.Contains(body, `id="assist"`) {
		t.Fatalf("live page: %d, no assist box", code)
	}
}

// The incident page draws the camera's reported locations during the
// incident: every point, the last one marked, a scale bar and the times;
// the API gives the same track.
func TestLocationTrack(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	tok := addStaff(t, n, "olga", backoffice.RoleOperator)
	inc := newIncident(t, n)
	for _, p := range []string{`"lat":52.3700,"lon":4.8900`, `"lat":52.3710,"lon":4.8915,"accuracy":8`, `"lat":52.3725,"lon":4.8930`} {
		n.postEvent(t, `{"type":"location",`+p+`}`)
	}
	c := newClient(t, n)
	code, body := c.do("GET", "/incidents/"+inc, tok, "", "")
	if code != http.StatusOK {
		t.Fatalf("incident page: %d %s", code, body)
	}
	for _, want := range []string{`<svg id="track"`, `class="last"`, "(last)", `id="scale"`, "52.37250, 4.89300", "3 reports during the incident"} {
		if !strings.Contains(body, want) {
			t.Errorf("incident page lacks %q", want)
		}
	}
	if n := strings.Count(body, `class="pt"`); n != 3 {
		t.Errorf("%d points drawn, want 3", n)
	}
	// About 350 m of track: a scale bar of 100 m fits a quarter of the drawing.
	if !strings.Contains(body, ">100 m<") {
		t.Errorf("scale bar: want 100 m")
	}
	code, body = c.do("GET", "/api/v1/incidents/"+inc, tok, "", "")
	var d struct {
		Track struct {
			Points []struct{ Lat, Lon, Accuracy float64 }
		}
	}
	if err := json.Unmarshal([]byte(body), &d); code != http.StatusOK || err != nil || len(d.Track.Points) != 3 || d.Track.Points[1].Accuracy != 8 {
		t.Fatalf("incident API: %d %v %+v", code, err, d.Track)
	}
}
