package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"camvault/backoffice"
)

// TestServeAlerts: `camvault serve --api-tokens --webhook
// --webhook-secret-file` serves a camera's warning as a server-sent event
// to a token holder and as a signed webhook; without a token it is 401;
// a webhook without a secret, or a token file others can read, is refused
// at start.
func TestServeAlerts(t *testing.T) {
	data, secrets := setupData(t, "cam1")
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	secretFile := filepath.Join(dir, "webhook.secret")
	const token = "e2e-operator-token-0123456789"
	const secret = "e2e-webhook-secret-0123456789"
	if err := os.WriteFile(tokens, []byte("ops operator "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, errs, code := camvault(t, "serve", "--data", data, "--webhook", "http://127.0.0.1:1/x"); code != 2 || !strings.Contains(errs, "--webhook-secret-file") {
		t.Fatalf("webhook without secret: exit %d\n%s", code, errs)
	}
	open := filepath.Join(dir, "open-tokens")
	os.WriteFile(open, []byte("ops operator "+token+"\n"), 0o644)
	if _, errs, code := camvault(t, "serve", "--data", data, "--api-tokens", open); code == 0 || !strings.Contains(errs, "chmod 600") {
		t.Fatalf("world-readable tokens: exit %d\n%s", code, errs)
	}

	type delivery struct{ event, sig, body string }
	var mu sync.Mutex
	var got []delivery
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Get(backoffice.HeaderEvent), r.Header.Get(backoffice.HeaderSignature), string(b)})
		mu.Unlock()
	}))
	defer hook.Close()
	s := newServer(t, data, "--api-tokens", tokens, "--webhook", hook.URL+"/camvault", "--webhook-secret-file", secretFile)
	events := fmt.Sprintf("http://127.0.0.1:%d/api/v1/events", s.httpPort)

	resp, err := http.Get(events)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %s", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodGet, events, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("event stream ended\n%s", s.logs())
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("no event line\n%s", s.logs())
		}
		return ""
	}
	for next() != "" { // the stream's first frame: it is live
	}

	post, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/cameras/cam1/events", s.whipPort), strings.NewReader(`{"type":"warning","n":1}`))
	post.Header.Set("Content-Type", "application/json")
	post.Header.Set("Authorization", "Bearer "+secrets["cam1"])
	if r, err := http.DefaultClient.Do(post); err != nil || r.StatusCode != http.StatusAccepted {
		t.Fatalf("post warning: %v %v", r, err)
	}
	if ev, id, data := next(), next(), next(); ev != "event: camera.warning" || id != "id: 1" || !strings.HasPrefix(data, `data: {"id":1,"type":"camera.warning","camera":"cam1"`) {
		t.Fatalf("SSE frame:\n%s\n%s\n%s", ev, id, data)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no webhook delivery\n%s", s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	d := got[0]
	mu.Unlock()
	if d.event != "camera.warning" || !strings.Contains(d.body, `"n":1`) {
		t.Fatalf("webhook %+v", d)
	}
	if err := backoffice.VerifySignature([]byte(secret), d.sig, []byte(d.body), time.Now(), time.Minute); err != nil {
		t.Fatalf("webhook signature: %v", err)
	}
}
