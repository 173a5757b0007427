package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBackofficeProcess: an ingest node run with --identity - never holds
// the identity, so its backoffice refuses footage (503) while serving
// alerts and metadata; `camvault backoffice` on the same data directory
// serves the footage, audited, and the ingest node goes on recording
// beside it.
func TestBackofficeProcess(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	addUser(t, data, "rita", "reviewer")
	token := strings.TrimSpace(mustCamvault(t, "user", "token", "rita", "--data", data))
	s := newServer(t, data, "--identity", "-")
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")

	call := func(method, url, body string) (int, []byte, http.Header) {
		t.Helper()
		return apiCall(t, token, method, url, body)
	}
	ingestAPI := fmt.Sprintf("http://127.0.0.1:%d/api/v1", s.httpPort)
	if code, b, _ := call("GET", ingestAPI+"/incidents/"+inc.ID, ""); code != http.StatusOK {
		t.Fatalf("incident metadata on the ingest node: %d %s", code, b)
	}
	if code, b, _ := call("POST", ingestAPI+"/incidents/"+inc.ID+"/views", `{"reason":"complaint 7"}`); code != http.StatusServiceUnavailable {
		t.Fatalf("footage on an ingest node without the identity: %d %s, want 503", code, b)
	}

	port := freePort(t)
	cmd := exec.Command(camvaultBin, "backoffice", "--data", data, "--http", fmt.Sprintf("127.0.0.1:%d", port))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("camvault backoffice exited: %s", logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("camvault backoffice not ready")
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})

	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1", port)
	code, b, _ := call("POST", api+"/incidents/"+inc.ID+"/views", `{"reason":"complaint 7"}`)
	if code != http.StatusCreated {
		t.Fatalf("open a view on the backoffice process: %d %s", code, b)
	}
	view := strings.Split(strings.Split(string(b), `"view":"`)[1], `"`)[0]
	code, b, h := call("GET", api+"/views/"+view+"/segments/1", "")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "video/mp4") || len(b) < 8 || string(b[4:8]) != "ftyp" {
		t.Fatalf("segment from the backoffice process: %d %q %.20q", code, h.Get("Content-Type"), b)
	}
	if trail := mustCamvault(t, "audit", "--data", data); !strings.Contains(trail, `"actor":"rita","action":"footage.viewed"`) {
		t.Fatalf("the view is not in the audit trail:\n%s", tail(trail, 2000))
	}

	// The ingest node records on, beside the backoffice process.
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish again: %v\n%s", err, s.logs())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows := incidents(t, data)
		if len(rows) >= 1 && rows[0].Chunks > inc.Chunks {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing more recorded beside the backoffice process: %+v\n%s", rows, s.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
