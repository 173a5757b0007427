package backoffice_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
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
