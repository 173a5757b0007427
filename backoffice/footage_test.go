package backoffice_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
)

// TestFootageViews: a reviewer must state a reason to open an incident's
// footage; the segment then arrives as a playable fragmented MP4 with its
// codecs named; the view is the reviewer's own; every fetch is in the
// audit trail with the reason; no other role gets footage.
func TestFootageViews(t *testing.T) {
	clip := testClip(t)
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	c := newClient(t, n)
	rita := addStaff(t, n, "rita", backoffice.RoleReviewer)
	ravi := addStaff(t, n, "ravi", backoffice.RoleReviewer)
	adam := addStaff(t, n, "adam", backoffice.RoleAdmin)
	aude := addStaff(t, n, "aude", backoffice.RoleAuditor)
	n.publish(t, clip, 20)
	var inc string
	waitFor(t, 20*time.Second, "incident.ended in the outbox", func() bool {
		for _, a := range n.outbox(t) {
			if a.Type == "incident.ended" {
				inc = a.Incident
				return true
			}
		}
		return false
	})

	code, body := c.do(http.MethodGet, "/api/v1/incidents/"+inc, adam, "", "")
	var detail backoffice.IncidentDetail
	if code != http.StatusOK || json.Unmarshal([]byte(body), &detail) != nil || len(detail.Segments) == 0 || detail.Segments[0].Seq != 1 {
		t.Fatalf("incident detail: %d %s", code, body)
	}

	views := "/api/v1/incidents/" + inc + "/views"
	for _, bad := range []string{``, `{}`, `{"reason":""}`, `{"reason":"   "}`, `{"reason":"x","extra":1}`, `not json`,
		`{"reason":"` + strings.Repeat("x", 2001) + `"}`} {
		if code, msg := c.do(http.MethodPost, views, rita, "", bad); code != http.StatusBadRequest {
			t.Errorf("open view with %.40q: %d %s, want 400", bad, code, msg)
		}
	}
	if code, _ := c.do(http.MethodPost, "/api/v1/incidents/no-such/views", rita, "", `{"reason":"r"}`); code != http.StatusNotFound {
		t.Errorf("view of an unknown incident: %d", code)
	}
	for _, tok := range []string{adam, aude} {
		if code, _ := c.do(http.MethodPost, views, tok, "", `{"reason":"curious"}`); code != http.StatusForbidden {
			t.Errorf("a non-reviewer opening footage: %d, want 403", code)
		}
	}
	const reason = "complaint 2026-118"
	code, body = c.do(http.MethodPost, views, rita, "", `{"reason":"`+reason+`"}`)
	var opened struct {
		View     string
		Segments []backoffice.Segment
	}
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &opened) != nil || opened.View == "" || len(opened.Segments) != len(detail.Segments) {
		t.Fatalf("open view: %d %s", code, body)
	}

	seg := "/api/v1/views/" + opened.View + "/segments/1"
	req, _ := http.NewRequest(http.MethodGet, c.base+seg, nil)
	req.Header.Set("Authorization", "Bearer "+rita)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var mp4 [8]byte
	resp.Body.Read(mp4[:])
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), `video/mp4; codecs="avc1.`) ||
		string(mp4[4:8]) != "ftyp" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("segment: %s %q %q", resp.Status, resp.Header.Get("Content-Type"), mp4)
	}
	for path, want := range map[string]int{
		"/api/v1/views/" + opened.View + "/segments/999": http.StatusNotFound,
		"/api/v1/views/" + opened.View + "/segments/0":   http.StatusBadRequest,
		"/api/v1/views/" + opened.View + "/segments/-1":  http.StatusBadRequest,
		"/api/v1/views/not-a-view/segments/1":            http.StatusNotFound,
	} {
		if code, _ := c.do(http.MethodGet, path, rita, "", ""); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
	// Another reviewer cannot ride on rita's reason.
	if code, _ := c.do(http.MethodGet, seg, ravi, "", ""); code != http.StatusNotFound {
		t.Errorf("another reviewer using the view: %d, want 404", code)
	}

	_, body = c.do(http.MethodGet, "/api/v1/audit", aude, "", "")
	opens, views1 := 0, 0
	var recs []struct {
		Actor, Action, Incident string
		Details                 map[string]any
	}
	if err := json.Unmarshal([]byte(body), &recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		switch {
		case r.Action == "footage.view.opened" && r.Actor == "rita" && r.Incident == inc && r.Details["reason"] == reason:
			opens++
		case r.Action == "footage.viewed" && r.Actor == "rita" && r.Incident == inc && r.Details["reason"] == reason && r.Details["segment"] == float64(1):
			views1++
		case strings.HasPrefix(r.Action, "footage.") && r.Actor != "rita":
			t.Errorf("footage record for someone who saw nothing: %+v", r)
		}
	}
	if opens != 1 || views1 != 1 {
		t.Fatalf("audit: %d view openings and %d segment views by rita with the reason, want 1 and 1\n%s", opens, views1, body)
	}
}
