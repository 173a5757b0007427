package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStaffCLI: the real binary's `user add` reads the password from
// stdin, prints the new user's API token alone on stdout, and that token
// is accepted by `serve`'s /api/v1/session with the user's role; the
// password then logs in with a session cookie.
func TestStaffCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	mustCamvault(t, "keygen", "--data", data)
	cmd := exec.Command(camvaultBin, "user", "add", "ines", "--role", "admin", "--data", data, "--by", "e2e")
	cmd.Stdin = strings.NewReader("twelve chars and more\n")
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("user add: %v\n%s", err, errs.String())
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(out.String()) {
		t.Fatalf("user add printed %q, want the token alone", out.String())
	}
	tok := strings.TrimSpace(out.String())
	s := newServer(t, data)
	base := fmt.Sprintf("http://127.0.0.1:%d", s.httpPort)
	req, _ := http.NewRequest("GET", base+"/api/v1/session", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"name":"ines","role":"admin"`) {
		t.Fatalf("session with the printed token: %d %s", resp.StatusCode, b)
	}
	body, _ := json.Marshal(map[string]string{"name": "ines", "password": "twelve chars and more"})
	resp, err = http.Post(base+"/api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Set-Cookie"), "camvault_session=") {
		t.Fatalf("login: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
}
