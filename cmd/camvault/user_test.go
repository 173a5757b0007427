package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"camvault/server"
)

// runUser runs `camvault user ARGS` with input on stdin.
func runUser(t *testing.T, input string, args ...string) (string, string, int) {
	t.Helper()
	stdin = strings.NewReader(input)
	var out, errs bytes.Buffer
	code := run(append([]string{"user"}, args...), &out, &errs)
	return out.String(), errs.String(), code
}

// TestUserCLI: `user add` prints only a token, and that token works on
// the backoffice's /api/v1/session with the user's role; short passwords,
// unknown roles and missing arguments are usage errors; list, token,
// revoke-token and disable change what the server accepts; every change
// is audited with --by.
func TestUserCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	tokenLine := regexp.MustCompile(`^[0-9a-f]{64}\n$`)
	out, errs, code := runUser(t, "a long enough password\nignored\n", "add", "dora", "--role", "reviewer", "--data", data, "--by", "root-admin")
	if code != 0 || !tokenLine.MatchString(out) {
		t.Fatalf("user add: %d, stdout %q, stderr %s", code, out, errs)
	}
	tok := strings.TrimSpace(out)
	for _, bad := range [][]string{
		{"add", "eve", "--role", "operator"},              // password under 12 characters (below)
		{"add", "eve", "--role", "chief", "--data", data}, // unknown role
		{"add", "--role", "operator", "--data", data},     // no name
		{"add", "bad name", "--role", "operator", "--data", data},
		{"add", "eve", "--role", "operator", "--password-env", "CAMVAULT_TEST_UNSET", "--data", data},
	} {
		if out, _, code := runUser(t, "short\n", bad...); code != 2 || out != "" {
			t.Errorf("user %v: exit %d, stdout %q; want 2 and nothing", bad, code, out)
		}
	}
	t.Setenv("CAMVAULT_TEST_PW", "another long password")
	if out, errs, code := runUser(t, "", "add", "olaf", "--role", "operator", "--password-env", "CAMVAULT_TEST_PW", "--data", data); code != 0 || !tokenLine.MatchString(out) {
		t.Fatalf("user add --password-env: %d %q %s", code, out, errs)
	}
	out, _, code = runUser(t, "", "list", "--json", "--data", data)
	var users []struct {
		Name, Role string
		Disabled   bool
	}
	if err := json.Unmarshal([]byte(out), &users); code != 0 || err != nil || len(users) != 2 || users[0].Name != "dora" || users[0].Role != "reviewer" {
		t.Fatalf("user list --json: %d %v %s", code, err, out)
	}
	out, _, _ = runUser(t, "", "token", "dora", "--data", data)
	tok2 := strings.TrimSpace(out)
	if !tokenLine.MatchString(out) || tok2 == tok {
		t.Fatalf("user token: %q", out)
	}
	if _, _, code := runUser(t, "", "revoke-token", "dora", "--data", data); code != 0 {
		t.Fatalf("revoke-token: %d", code)
	}
	if _, _, code := runUser(t, "yet another password\n", "passwd", "olaf", "--data", data); code != 0 {
		t.Fatalf("passwd: %d", code)
	}
	if _, _, code := runUser(t, "", "disable", "nobody", "--data", data); code != 2 {
		t.Fatalf("disable of an unknown user: %d, want 2", code)
	}
	newTok, _, _ := runUser(t, "", "token", "dora", "--data", data)

	srv, err := server.Open(server.Config{DataDir: data, RTSPAddress: "127.0.0.1:0", HTTPAddress: "127.0.0.1:0",
		WHIPAddress: "-", SweepEvery: -1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer srv.Close()
	session := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr()+"/api/v1/session", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := session(strings.TrimSpace(newTok)); code != 200 || !strings.Contains(body, `"name":"dora","role":"reviewer"`) {
		t.Fatalf("session with the CLI's token: %d %s", code, body)
	}
	for _, old := range []string{tok, tok2} {
		if code, _ := session(old); code != http.StatusUnauthorized {
			t.Fatalf("revoked token: %d, want 401", code)
		}
	}
	if _, _, code := runUser(t, "", "disable", "dora", "--data", data); code != 0 {
		t.Fatalf("disable: %d", code)
	}
	if code, _ := session(strings.TrimSpace(newTok)); code != http.StatusUnauthorized {
		t.Fatalf("token of a disabled user: %d, want 401", code)
	}
	lines, err := srv.Catalog.AuditLines(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	all := string(bytes.Join(lines, []byte("\n")))
	for _, a := range []string{"user.add", "user.token", "user.revoke-tokens", "user.passwd", "user.disable"} {
		if !strings.Contains(all, `"action":"`+a+`"`) {
			t.Errorf("no %s in the audit trail", a)
		}
	}
	if !strings.Contains(all, `"actor":"root-admin"`) || strings.Contains(all, "long password") {
		t.Errorf("audit trail: want --by as actor and no password:\n%s", all)
	}
}
