package backoffice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
	"camvault/catalog"
)

const testPassword = "correct horse battery staple"

// addStaff creates an account and returns its API token.
func addStaff(t testing.TB, n *node, name string, role backoffice.Role) string {
	t.Helper()
	h, err := backoffice.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	tok, digest := backoffice.NewSecret()
	if err := n.srv.Catalog.AddStaff(context.Background(), catalog.StaffUser{Name: name, Role: string(role), PasswordHash: h},
		digest, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is a browser-like HTTP client with its own cookie jar.
type client struct {
	t    testing.TB
	base string
	hc   *http.Client
	csrf string
}

func newClient(t testing.TB, n *node) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: "http://" + n.srv.HTTPAddr(), hc: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		// A page's redirect to the login form is an answer to check, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request; bearer and csrf are added when not empty.
func (c *client) do(method, path, bearer, csrf, body string) (int, string) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // ends an SSE stream once its status is known
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *client) login(name, password string) (int, *http.Response) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]string{"name": name, "password": password})
	resp, err := c.hc.Post(c.base+"/api/v1/login", "application/json", bytes.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ CSRF string }
	json.NewDecoder(resp.Body).Decode(&info)
	c.csrf = info.CSRF
	return resp.StatusCode, resp
}

func newIncident(t testing.TB, n *node) string {
	t.Helper()
	st, err := n.srv.Catalog.StartSession(context.Background(), catalog.SessionStart{Camera: camID, Officer: "officer one",
		Session: catalog.NewID("s-", time.Now()), WrappedKey: []byte("k"), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return st.Incident
}

// TestAuthorizationMatrix: every registered route, for every role (by
// staff API token and by login session), without credentials and with a
// camera's bearer secret, is allowed or refused exactly as the matrix
// says. The routes come from the service's registry, so a new route is
// covered (and cannot be registered without a rule).
func TestAuthorizationMatrix(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	type who struct {
		label          string
		role           backoffice.Role // "" : nobody
		bearer, cookie bool
		c              *client
		tok            string
	}
	var whos []who
	for _, r := range backoffice.Roles {
		tok := addStaff(t, n, "u-"+string(r), r)
		whos = append(whos, who{label: string(r) + "/token", role: r, bearer: true, c: newClient(t, n), tok: tok})
		c := newClient(t, n)
		if code, _ := c.login("u-"+string(r), testPassword); code != http.StatusOK {
			t.Fatalf("login %s: %d", r, code)
		}
		whos = append(whos, who{label: string(r) + "/session", role: r, cookie: true, c: c})
	}
	whos = append(whos, who{label: "nobody", c: newClient(t, n)}, who{label: "camera", c: newClient(t, n), tok: n.secret, bearer: true})

	routes := n.srv.Backoffice.Routes()
	if len(routes) < 9 {
		t.Fatalf("only %d routes registered: %v", len(routes), routes)
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		path = strings.ReplaceAll(strings.ReplaceAll(path, "{id}", "no-such-incident"), "{$}", "")
		body := ""
		if method == http.MethodPost {
			body = `{"reason":"matrix test","reference":"PR-1"}`
		}
		for _, w := range whos {
			if rt.Pattern == "POST /api/v1/logout" && w.cookie {
				continue // would end the session the later routes use; TestLoginSession covers it
			}
			csrf := ""
			if w.cookie {
				csrf = w.c.csrf
			}
			code, msg := w.c.do(method, path, w.tok, csrf, body)
			switch {
			case rt.Action == backoffice.ActionPublic:
				if code == http.StatusUnauthorized || code == http.StatusForbidden {
					t.Errorf("%s as %s: %d %s, want it open to anyone", rt.Pattern, w.label, code, msg)
				}
			case w.role == "" && rt.Page:
				if code != http.StatusSeeOther {
					t.Errorf("%s as %s: %d %s, want 303 to the login page", rt.Pattern, w.label, code, msg)
				}
			case w.role == "":
				if code != http.StatusUnauthorized {
					t.Errorf("%s as %s: %d %s, want 401", rt.Pattern, w.label, code, msg)
				}
			case backoffice.Allowed(w.role, rt.Action):
				if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
					t.Errorf("%s as %s: %d %s, the matrix allows %s", rt.Pattern, w.label, code, msg, rt.Action)
				}
			default:
				if code != http.StatusForbidden {
					t.Errorf("%s as %s: %d %s, want 403 (%s not allowed)", rt.Pattern, w.label, code, msg, rt.Action)
				}
			}
		}
	}
}

// TestCSRF: a cookie-authenticated state change needs the session's CSRF
// token; without it or with a wrong one it is refused and changes nothing.
// A bearer token needs none.
func TestCSRF(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	tok := addStaff(t, n, "admin1", backoffice.RoleAdmin)
	inc := newIncident(t, n)
	c := newClient(t, n)
	if code, _ := c.login("admin1", testPassword); code != http.StatusOK || len(c.csrf) != 64 {
		t.Fatalf("login: %d, csrf %q", code, c.csrf)
	}
	if code, body := c.do("GET", "/api/v1/session", "", "", ""); code != http.StatusOK || !strings.Contains(body, c.csrf) {
		t.Fatalf("session: %d %s, want the csrf token", code, body)
	}
	hold := `{"reason":"court order","reference":"PR-2026-1"}`
	held := func() bool {
		h, err := n.srv.Catalog.ActiveHold(context.Background(), inc)
		if err != nil {
			t.Fatal(err)
		}
		return h != nil
	}
	for _, bad := range []string{"", strings.Repeat("0", 64)} {
		if code, _ := c.do("POST", "/api/v1/incidents/"+inc+"/hold", "", bad, hold); code != http.StatusForbidden {
			t.Fatalf("hold with csrf %q: %d, want 403", bad, code)
		}
		if held() {
			t.Fatalf("hold placed without a valid csrf token")
		}
	}
	// A form post carries the token in its csrf field.
	form := url.Values{"csrf": {"wrong"}}
	resp, err := c.hc.PostForm(c.base+"/api/v1/logout", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout form with a wrong csrf: %d, want 403", resp.StatusCode)
	}
	if code, body := c.do("POST", "/api/v1/incidents/"+inc+"/hold", "", c.csrf, hold); code != http.StatusOK || !held() {
		t.Fatalf("hold with csrf: %d %s", code, body)
	}
	if code, body := newClient(t, n).do("POST", "/api/v1/incidents/"+inc+"/release", tok, "", `{"reason":"case closed"}`); code != http.StatusOK || held() {
		t.Fatalf("release by bearer token: %d %s", code, body)
	}
	form = url.Values{"csrf": {c.csrf}}
	if resp, err = c.hc.PostForm(c.base+"/api/v1/logout", form); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout form with csrf: %d", resp.StatusCode)
	}
	if code, _ := c.do("GET", "/api/v1/session", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("session after logout: %d, want 401", code)
	}
}

// TestLoginSession: the cookie's attributes; wrong passwords are refused
// and audited without the password; the rate limit answers 429; a
// disabled user's session and token stop working at once.
func TestLoginSession(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	tok := addStaff(t, n, "op1", backoffice.RoleOperator)
	addStaff(t, n, "op2", backoffice.RoleOperator)
	c := newClient(t, n)
	const wrong = "not the password at all"
	if code, _ := c.login("op1", wrong); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	code, resp := c.login("op1", testPassword)
	if code != http.StatusOK {
		t.Fatalf("login: %d", code)
	}
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == backoffice.SessionCookie {
			ck = k
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure || len(ck.Value) != 64 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP, 256 bits", ck)
	}
	lines, err := n.srv.Catalog.AuditLines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all := string(bytes.Join(lines, []byte("\n")))
	if !strings.Contains(all, `"action":"login.failure"`) || !strings.Contains(all, `"action":"login.success"`) {
		t.Fatalf("audit lacks the login records:\n%s", all)
	}
	if strings.Contains(all, wrong) || strings.Contains(all, testPassword) {
		t.Fatalf("a password is in the audit trail:\n%s", all)
	}
	// Rate limit per name: 5 attempts pass (one used above by the failure,
	// one by the success), then 429 even with the right password.
	c2 := newClient(t, n)
	for i := 0; i < 3; i++ {
		c2.login("op1", wrong)
	}
	if code, _ := c2.login("op1", testPassword); code != http.StatusTooManyRequests {
		t.Fatalf("6th login attempt for op1: %d, want 429", code)
	}
	// ... and per address, whatever the name: op2 has not been tried, but
	// this address has.
	if code, _ := c2.login("op2", testPassword); code != http.StatusTooManyRequests {
		t.Fatalf("login from a throttled address: %d, want 429", code)
	}

	if code, _ := c.do("GET", "/api/v1/session", "", "", ""); code != http.StatusOK {
		t.Fatalf("session: %d", code)
	}
	if err := n.srv.Catalog.DisableStaff(context.Background(), "op1", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.do("GET", "/api/v1/session", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("session of a disabled user: %d, want 401", code)
	}
	if code, _ := c.do("GET", "/api/v1/session", tok, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("token of a disabled user: %d, want 401", code)
	}
}

// TestDisabledLoginAndRevokedToken: a disabled user cannot log in (401,
// audited), and a revoked token stops working while a new one works.
func TestDisabledLoginAndRevokedToken(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	ctx := context.Background()
	tok := addStaff(t, n, "rev1", backoffice.RoleReviewer)
	addStaff(t, n, "gone", backoffice.RoleAdmin)
	if err := n.srv.Catalog.DisableStaff(ctx, "gone", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, n)
	if code, _ := c.login("gone", testPassword); code != http.StatusUnauthorized {
		t.Fatalf("disabled login: %d, want 401", code)
	}
	if code, _ := c.do("GET", "/api/v1/session", tok, "", ""); code != http.StatusOK {
		t.Fatalf("token: %d", code)
	}
	if err := n.srv.Catalog.RevokeStaffTokens(ctx, "rev1", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.do("GET", "/api/v1/session", tok, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d, want 401", code)
	}
	tok2, d := backoffice.NewSecret()
	if err := n.srv.Catalog.AddStaffToken(ctx, "rev1", d, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, body := c.do("GET", "/api/v1/session", tok2, "", ""); code != http.StatusOK || !strings.Contains(body, `"role":"reviewer"`) {
		t.Fatalf("new token: %d %s", code, body)
	}
	// Neither the tokens nor the password are stored in the clear.
	n.close(t)
	for _, f := range []string{"catalog.db", "catalog.db-wal"} {
		b, err := os.ReadFile(filepath.Join(n.data, f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, secret := range []string{tok, tok2, testPassword} {
			if bytes.Contains(b, []byte(secret)) {
				t.Fatalf("%s holds a secret in the clear", f)
			}
		}
	}
}

// TestPasswordHash: argon2id PHC strings, salted, never holding the
// password; verification and refusal of short passwords and bad hashes.
func TestPasswordHash(t *testing.T) {
	h1, err := backoffice.HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := backoffice.HashPassword(testPassword)
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=65536,t=1,p=2$") || h1 == h2 || strings.Contains(h1, testPassword) {
		t.Fatalf("hashes %q, %q: want salted argon2id PHC strings without the password", h1, h2)
	}
	if ok, err := backoffice.VerifyPassword(h1, testPassword); !ok || err != nil {
		t.Fatalf("verify: %v %v", ok, err)
	}
	if ok, _ := backoffice.VerifyPassword(h1, testPassword+"x"); ok {
		t.Fatal("a wrong password verified")
	}
	if _, err := backoffice.HashPassword("short pass"); err == nil {
		t.Fatal("an 10-character password was accepted")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=65536,t=1,p=2$c2FsdA$a2V5", "$argon2id$v=19$m=x$c2FsdA$a2V5", "$argon2id$v=19$m=65536,t=1,p=2$!!$a2V5"} {
		if _, err := backoffice.VerifyPassword(bad, testPassword); err == nil {
			t.Errorf("hash %q: no error", bad)
		}
	}
}

// TestDisabledUserLosesStream: an open alert stream of a user who is then
// disabled ends within a heartbeat.
func TestDisabledUserLosesStream(t *testing.T) {
	n := startNode(t, dataDir(t), "", backoffice.Config{Heartbeat: 50 * time.Millisecond})
	tok := addStaff(t, n, "op3", backoffice.RoleOperator)
	c, code := dialSSE(t, n.eventsURL(), tok, "")
	if code != http.StatusOK {
		t.Fatalf("events: %d", code)
	}
	waitFor(t, 5*time.Second, "a heartbeat", func() bool { return c.pingCount() > 0 })
	if err := n.srv.Catalog.DisableStaff(context.Background(), "op3", "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of a disabled user is still open")
	}
}
