package e2e

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoSecretInLogs runs a node through what its users do (cameras
// publishing, refused with a wrong secret, posting events; staff logging
// in, failing to, calling the API with tokens; a secret rotated; an
// export) and then looks for every secret of the run in everything camvault
// wrote that is not meant to show it: the server's log and the stderr of
// every command. Secrets are shown once on stdout where that is the point
// (camera add, rotate, user add, token); never anywhere else.
func TestNoSecretInLogs(t *testing.T) {
	c := testClip(t, 4)
	data, secrets := setupData(t, "cam1", "cam2")
	addUser(t, data, "alice", "admin")
	token := strings.TrimSpace(mustCamvault(t, "user", "token", "alice", "--data", data))
	s := newServer(t, data)
	var stderrs []string
	run := func(args ...string) string {
		t.Helper()
		out, errs, _ := camvault(t, args...)
		stderrs = append(stderrs, errs)
		return out
	}

	// Cameras: one publishes with its secret, one is refused with a wrong
	// one (the refusal is logged), WHIP and events with right and wrong
	// bearers.
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	wrong := secrets["cam2"][:len(secrets["cam2"])-4] + "AAAA"
	ff := exec.Command(requireTool(t, "ffmpeg"), "-hide_banner", "-loglevel", "error", "-re", "-i", c.MP4, "-t", "1", "-c", "copy",
		"-f", "rtsp", "-rtsp_transport", "tcp", s.rtspURL("cam2", wrong, "cam2"))
	if ff.Run() == nil {
		t.Fatal("a wrong camera secret was accepted over RTSP")
	}
	post := func(url, bearer, ctype, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		for _, ck := range resp.Cookies() {
			secrets["cookie "+ck.Name] = ck.Value
		}
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := post(s.whipURL("cam2"), wrong, "application/sdp", "v=0\r\n"); code != http.StatusUnauthorized {
		t.Fatalf("WHIP with a wrong secret: %d", code)
	}
	if code := post(s.whipURL("cam2"), secrets["cam2"], "application/sdp", "not sdp"); code != http.StatusBadRequest {
		t.Fatalf("WHIP with a bad offer: %d", code)
	}
	events := fmt.Sprintf("http://127.0.0.1:%d/cameras/cam2/events", s.whipPort)
	if code := post(events, secrets["cam2"], "application/json", `{"type":"warning","n":1}`); code != http.StatusAccepted {
		t.Fatalf("camera event: %d", code)
	}

	// Staff: a failed and a good login, API calls with the token.
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1", s.httpPort)
	if code := post(api+"/login", "", "application/json", `{"name":"alice","password":"not the password at all"}`); code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: %d", code)
	}
	if code := post(api+"/login", "", "application/json", fmt.Sprintf(`{"name":"alice","password":%q}`, staffPassword)); code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("login: %d", code)
	}
	if code := post(api+"/incidents/"+inc.ID+"/hold", token, "application/json", `{"reason":"complaint","reference":"PR-1"}`); code >= 500 {
		t.Fatalf("hold: %d", code)
	}
	if code := post(api+"/incidents/"+inc.ID+"/views", "not-"+token, "application/json", `{"reason":"x"}`); code != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %d", code)
	}

	// A rotated secret, a verify and an export with the identity.
	rotated := strings.TrimSpace(run("camera", "rotate", "cam2", "--data", data))
	secrets["cam2 rotated"] = rotated
	run("verify", inc.ID, "--data", data)
	run("export", inc.ID, "--identity", identityPath(data), "--out", filepath.Join(t.TempDir(), "export"), "--data", data)
	run("incidents", "--data", data)
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Every secret of the run, and each key file in the forms it could
	// leak in.
	look := map[string]string{"alice's password": staffPassword, "alice's token": token, "wrong cam2 secret": wrong}
	for k, v := range secrets {
		look["secret "+k] = v
	}
	for _, f := range []string{"pepper", "node.key", "backoffice.identity"} {
		b, err := os.ReadFile(filepath.Join(data, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				look[f] = line
				if raw, err := base64.StdEncoding.DecodeString(line); err == nil {
					look[f+" (hex)"] = hex.EncodeToString(raw)
				}
			}
		}
	}
	written := s.logs() + strings.Join(stderrs, "\n")
	if !strings.Contains(written, "cam2") {
		t.Fatalf("the log does not mention the refused camera at all: the test looks at the wrong output\n%s", tail(written, 2000))
	}
	for what, v := range look {
		if len(v) < 8 {
			t.Fatalf("%s is too short to look for: %q", what, v)
		}
		if strings.Contains(written, v) {
			t.Errorf("%s appears in the log or a command's stderr", what)
		}
	}
}
