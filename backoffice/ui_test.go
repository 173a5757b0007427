package backoffice_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
	"camvault/catalog"
)

// TestPages: every page renders for the roles the matrix allows, with
// headers that stop framing and foreign scripts; without a session a page
// redirects to the login form (keeping where it was going), and a role
// that may not open it gets a 403 page.
func TestPages(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	inc := newIncident(t, n)
	sessions := map[backoffice.Role]*client{}
	for _, r := range backoffice.Roles {
		addStaff(t, n, "u-"+string(r), r)
		c := newClient(t, n)
		if code, _ := c.login("u-"+string(r), testPassword); code != http.StatusOK {
			t.Fatalf("login %s: %d", r, code)
		}
		sessions[r] = c
	}
	pages := map[string]backoffice.Action{
		"/": backoffice.ActionAlertsRead, "/incidents/" + inc: backoffice.ActionIncidentsRead,
		"/cameras": backoffice.ActionCamerasManage, "/staff": backoffice.ActionUsersManage, "/audit": backoffice.ActionAuditRead,
	}
	for path, action := range pages {
		for role, c := range sessions {
			code, body := c.do(http.MethodGet, path, "", "", "")
			if backoffice.Allowed(role, action) {
				if code != http.StatusOK || !strings.Contains(body, "<title>") || !strings.Contains(body, `<meta name="csrf" content="`+c.csrf+`">`) {
					t.Errorf("%s as %s: %d\n%s", path, role, code, body)
				}
			} else if code != http.StatusForbidden || !strings.Contains(body, "Not allowed") {
				t.Errorf("%s as %s: %d, want the 403 page", path, role, code)
			}
		}
		resp, err := newClient(t, n).hc.Get(newClient(t, n).base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?next=") {
			t.Errorf("%s without a session: %d to %q, want 303 to the login page", path, resp.StatusCode, loc)
		}
	}
	// What each role is offered on an incident follows the matrix.
	_, body := sessions[backoffice.RoleReviewer].do(http.MethodGet, "/incidents/"+inc, "", "", "")
	if !strings.Contains(body, `id="watch"`) || strings.Contains(body, `id="hold"`) {
		t.Error("the reviewer's incident page: want the player and no hold form")
	}
	_, body = sessions[backoffice.RoleAdmin].do(http.MethodGet, "/incidents/"+inc, "", "", "")
	if strings.Contains(body, `id="watch"`) || !strings.Contains(body, `id="hold"`) || !strings.Contains(body, `id="export"`) {
		t.Error("the admin's incident page: want hold and export forms and no player")
	}
	_, body = sessions[backoffice.RoleOperator].do(http.MethodGet, "/incidents/"+inc, "", "", "")
	if strings.Contains(body, `id="watch"`) || strings.Contains(body, `id="hold"`) || strings.Contains(body, `id="export"`) {
		t.Error("the operator's incident page offers footage, holds or exports")
	}

	resp, err := sessions[backoffice.RoleOperator].hc.Get(n.base() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("page headers: CSP %q, nosniff %q", csp, resp.Header.Get("X-Content-Type-Options"))
	}
	for path, served := range map[string]bool{"/static/app.js": true, "/static/app.css": true, "/login": true, "/static/": false, "/static/../ui.go": false} {
		if code, body := newClient(t, n).do(http.MethodGet, path, "", "", ""); (code == http.StatusOK) != served {
			t.Errorf("%s: %d %.80s, served %v", path, code, body, served)
		}
	}
}

// TestCompression: pages, scripts and JSON are gzipped for a client that
// accepts it; the alert stream is not, so events are not held back.
func TestCompression(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	tok := addStaff(t, n, "u-admin", backoffice.RoleAdmin)
	for i := range 10 { // lists long enough to be worth compressing
		addStaff(t, n, fmt.Sprintf("u-%d", i), backoffice.RoleOperator)
	}
	get := func(path string) *http.Response {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base()+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, path := range []string{"/static/app.js", "/static/app.css", "/staff", "/api/v1/users"} {
		resp := get(path)
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("%s: Content-Encoding %q, want gzip", path, resp.Header.Get("Content-Encoding"))
		} else if zr, err := gzip.NewReader(resp.Body); err != nil {
			t.Errorf("%s: %v", path, err)
		} else if b, err := io.ReadAll(zr); err != nil || len(b) == 0 {
			t.Errorf("%s: gunzip: %v (%d bytes)", path, err, len(b))
		}
		resp.Body.Close()
	}
	resp := get("/api/v1/events")
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("the alert stream is compressed (%q)", resp.Header.Get("Content-Encoding"))
	}
	line := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "retry" {
		t.Fatalf("the alert stream's first frame did not arrive: %q %v", line, err)
	}
}

// livePage reads what the Live page opens with: the alerts embedded in it,
// the outbox position its stream resumes from, and whether the empty
// state shows.
func livePage(t *testing.T, n *node, bearer string) (recent []catalog.Alert, after int64, empty bool) {
	t.Helper()
	code, body := newClient(t, n).do(http.MethodGet, "/", bearer, "", "")
	if code != http.StatusOK {
		t.Fatalf("live page: %d\n%s", code, body)
	}
	m := regexp.MustCompile(`(?s)<script type="application/json" id="feed-recent">(.*?)</script>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("live page has no recent alerts:\n%s", body)
	}
	if err := json.Unmarshal([]byte(m[1]), &recent); err != nil {
		t.Fatalf("recent alerts %q: %v", m[1], err)
	}
	a := regexp.MustCompile(`<ol id="feed"[^>]* data-after="(\d+)"`).FindStringSubmatch(body)
	if a == nil {
		t.Fatalf("live page: no data-after on the feed:\n%s", body)
	}
	after, _ = strconv.ParseInt(a[1], 10, 64)
	e := regexp.MustCompile(`<p id="feed-empty"[^>]*>`).FindString(body)
	if e == "" || !strings.Contains(body, "No alerts yet") {
		t.Fatalf("live page has no empty state:\n%s", body)
	}
	return recent, after, !strings.Contains(e, "hidden")
}

// TestLivePageRecentAlerts: the Live page opens with the latest 50 alerts
// the viewer's role may see (the auditor only holds), oldest first, and
// the position its stream resumes from; with none it says "no alerts
// yet"; the stream from that position carries what came after, once.
func TestLivePageRecentAlerts(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{Heartbeat: 150 * time.Millisecond})
	if recent, after, empty := livePage(t, n, tokAlice); len(recent) != 0 || after != 0 || !empty {
		t.Fatalf("fresh node: %d recent alerts, after %d, empty state shown %v; want none, 0, shown", len(recent), after, empty)
	}
	ctx := context.Background()
	at := time.Now().UTC()
	if err := n.srv.Catalog.AddAlert(ctx, "hold.placed", camID, "inc-1", at, map[string]any{"reference": "PR-1"}); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if err := n.srv.Catalog.AddAlert(ctx, "camera.warning", camID, "", at, map[string]any{"n": i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	all := n.outbox(t)
	last := all[len(all)-1].ID

	// The page reads up to where the stream's poller is, which follows
	// the outbox within its poll interval.
	var recent []catalog.Alert
	var after int64
	var empty bool
	for deadline := time.Now().Add(latencyBound); ; time.Sleep(20 * time.Millisecond) {
		if recent, after, empty = livePage(t, n, tokAlice); after == last || time.Now().After(deadline) {
			break
		}
	}
	if len(recent) != 50 || after != last || empty {
		t.Fatalf("operator: %d recent alerts, after %d, empty state shown %v; want 50, %d, hidden", len(recent), after, empty, last)
	}
	for i, a := range recent {
		if want := all[len(all)-50+i]; a.ID != want.ID || a.Type != want.Type || !a.At.Equal(want.At) {
			t.Fatalf("operator's recent alert %d: %+v, want %+v (the latest 50, oldest first)", i, a, want)
		}
	}
	recent, after, empty = livePage(t, n, tokBob)
	if len(recent) != 1 || recent[0].Type != "hold.placed" || recent[0].ID != all[0].ID || after != last || empty {
		t.Fatalf("auditor: %+v, after %d, empty %v; want only the hold", recent, after, empty)
	}

	// The stream from the page's position has only what came after it.
	evs, code := dialSSE(t, n.eventsURL()+"?after="+strconv.FormatInt(after, 10), tokAlice, "")
	if code != http.StatusOK {
		t.Fatalf("stream: %d", code)
	}
	n.postEvent(t, `{"type":"warning","n":2}`)
	ev := evs.next(t, latencyBound)
	if ev.Type != "camera.warning" || ev.ID != last+1 || !strings.Contains(ev.Data, `"n":2`) {
		t.Fatalf("first event after the page's position: %+v, want the new warning %d", ev, last+1)
	}
}
