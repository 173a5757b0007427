package backoffice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"camvault/backoffice"
	"camvault/catalog"
	"camvault/retention"
)

// latencyBound is what the tests assert for alert delivery; the target is
// well under 1 s, the bound leaves room for the race detector on a busy
// 2-core machine.
const latencyBound = 2 * time.Second

// checkEvent asserts that an SSE event is exactly the outbox entry: its
// event field the type, its id the outbox id, its data the alert's JSON.
func checkEvent(t *testing.T, ev sseEvent, want catalog.Alert) {
	t.Helper()
	wantJSON, _ := json.Marshal(want)
	if ev.Type != want.Type || ev.ID != want.ID || ev.Data != string(wantJSON) {
		t.Fatalf("event %s id %d data %s\nwant %s id %d data %s", ev.Type, ev.ID, ev.Data, want.Type, want.ID, wantJSON)
	}
}

func types(evs []sseEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// TestEventsSSE: an operator's stream carries the camera's warnings (posted
// to the real ingest endpoint) and the incident of a real RTSP publish, in
// outbox order, with the right event and id fields; a client that
// reconnects with Last-Event-ID (or ?after=) gets exactly what it missed;
// the auditor gets holds only; without a valid token it is 401.
func TestEventsSSE(t *testing.T) {
	c := testClip(t)
	n := startNode(t, dataDir(t), "", backoffice.Config{Heartbeat: 150 * time.Millisecond})
	url := n.eventsURL()

	for _, tok := range []string{"", "not-a-token-0123456789", tokAlice + "x"} {
		if _, code := dialSSE(t, url, tok, ""); code != http.StatusUnauthorized {
			t.Fatalf("token %q: status %d, want 401", tok, code)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("alice", tokAlice)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("basic auth: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, code := dialSSE(t, url, tokAlice, "twelve"); code != http.StatusBadRequest {
		t.Fatalf("malformed Last-Event-ID: %d, want 400", code)
	}

	carol, _ := dialSSE(t, url, tokCarol, "") // an operator connected throughout
	alice, _ := dialSSE(t, url, tokAlice, "") // an operator who drops out
	bob, _ := dialSSE(t, url, tokBob, "")     // the auditor

	n.postEvent(t, `{"type":"warning","n":1}`)
	w1 := alice.next(t, 5*time.Second)
	if w1.Type != "camera.warning" || !strings.Contains(w1.Data, `"n":1`) {
		t.Fatalf("first event %+v", w1)
	}
	alice.close()

	n.postEvent(t, `{"type":"warning","n":2}`)
	n.publish(t, c, 10)
	got := carol.until(t, "incident.ended", 20*time.Second)
	if want := []string{"camera.warning", "camera.warning", "incident.started", "incident.ended"}; !slices.Equal(types(got), want) {
		t.Fatalf("operator saw %v, want %v", types(got), want)
	}
	all := n.outbox(t)
	if len(all) != len(got) {
		t.Fatalf("outbox has %d alerts, the stream %d", len(all), len(got))
	}
	for i := range all {
		checkEvent(t, got[i], all[i])
	}
	started := all[2]
	if started.Incident == "" || started.Camera != camID || started.Data["officer"] != "officer one" {
		t.Fatalf("incident.started %+v", started)
	}

	// Alice comes back: exactly the three she missed, then nothing.
	alice, _ = dialSSE(t, url, tokAlice, strconv.FormatInt(w1.ID, 10))
	for _, want := range all[1:] {
		checkEvent(t, alice.next(t, 5*time.Second), want)
	}
	alice.none(t, 300*time.Millisecond)
	// A client that cannot set headers resumes with ?after=.
	after, _ := dialSSE(t, url+"?after="+strconv.FormatInt(started.ID, 10), tokAlice, "")
	checkEvent(t, after.next(t, 5*time.Second), all[3])

	// The auditor saw none of it; a legal hold reaches it, and everyone else.
	bob.none(t, 0)
	if err := retention.PlaceHold(context.Background(), n.srv.Catalog, n.srv.Store.(retention.ChunkHolder), catalog.Hold{
		Incident: started.Incident, Reason: "complaint", Reference: "PR-1", PlacedBy: "admin", PlacedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	hold := bob.next(t, 5*time.Second)
	if hold.Type != "hold.placed" || !strings.Contains(hold.Data, started.Incident) {
		t.Fatalf("auditor got %+v", hold)
	}
	if ev := carol.next(t, 5*time.Second); ev.Type != "hold.placed" || ev.ID != hold.ID {
		t.Fatalf("operator got %+v after the incident", ev)
	}
	// Another process writing the outbox (the CLI, a sweep): its alerts
	// are picked up too.
	other, err := catalog.Open(filepath.Join(n.data, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.AddAlert(context.Background(), "retention.deleted", camID, started.Incident, time.Now(), map[string]any{"chunks": 1}); err != nil {
		t.Fatal(err)
	}
	if ev := bob.next(t, 5*time.Second); ev.Type != "retention.deleted" || ev.ID != hold.ID+1 {
		t.Fatalf("auditor got %+v from another writer", ev)
	}
	if carol.pingCount() == 0 {
		t.Fatal("no heartbeat comment on an idle stream")
	}
}

// TestAlertLatency: incident.started reaches an SSE client and a webhook
// receiver within the bound of the first keyframe being sent over RTSP.
func TestAlertLatency(t *testing.T) {
	c := testClip(t)
	recv := &hookReceiver{}
	hs := httptest.NewServer(recv)
	defer hs.Close()
	secret := []byte(hookToken)
	n := startNode(t, dataDir(t), "", backoffice.Config{Webhooks: []string{hs.URL + "/hook"}, WebhookSecret: secret})
	cl, _ := dialSSE(t, n.eventsURL(), tokAlice, "")
	keyframe := n.publish(t, c, 5)
	evs := cl.until(t, "incident.started", 10*time.Second)
	sse := evs[len(evs)-1].At.Sub(keyframe)
	var hook hookDelivery
	waitFor(t, 10*time.Second, "incident.started at the webhook", func() bool {
		for _, d := range recv.deliveries() {
			if d.Event == "incident.started" {
				hook = d
				return true
			}
		}
		return false
	})
	webhook := hook.At.Sub(keyframe)
	t.Logf("first keyframe sent → incident.started: SSE %v, webhook %v", sse.Round(time.Millisecond), webhook.Round(time.Millisecond))
	if sse > latencyBound || webhook > latencyBound {
		t.Fatalf("alert latency SSE %v, webhook %v: over %v", sse, webhook, latencyBound)
	}
	if err := backoffice.VerifySignature(secret, hook.Signature, hook.Body, time.Now(), time.Minute); err != nil {
		t.Fatalf("webhook signature: %v", err)
	}
	if hook.Delivery != strconv.FormatInt(evs[len(evs)-1].ID, 10) || string(hook.Body) != evs[len(evs)-1].Data {
		t.Fatalf("webhook delivery %s body %s; SSE id %d data %s", hook.Delivery, hook.Body, evs[len(evs)-1].ID, evs[len(evs)-1].Data)
	}
}

// TestWebhookDownAcrossRestart: the receiver refuses connections, then the
// server restarts, then the receiver answers 503, then it is back: every
// alert arrives exactly once, in outbox order, correctly signed.
func TestWebhookDownAcrossRestart(t *testing.T) {
	c := testClip(t)
	port := freePort(t) // nothing listens there yet: connection refused
	hookURL := fmt.Sprintf("http://127.0.0.1:%d/hook", port)
	secret := []byte(hookToken)
	cfg := backoffice.Config{Webhooks: []string{hookURL}, WebhookSecret: secret,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	data := dataDir(t)
	ctx := context.Background()
	failures := func(n *node, min int) func() bool {
		return func() bool {
			st, err := n.srv.Catalog.Webhooks(ctx)
			return err == nil && len(st) == 1 && st[0].Attempts >= min
		}
	}

	n := startNode(t, data, "", cfg)
	n.postEvent(t, `{"type":"warning","n":1}`)
	n.postEvent(t, `{"type":"location","lat":52.37,"lon":4.89}`)
	n.publish(t, c, 5)
	waitFor(t, 20*time.Second, "incident.ended in the outbox", func() bool {
		all := n.outbox(t)
		return len(all) > 0 && all[len(all)-1].Type == "incident.ended"
	})
	waitFor(t, 10*time.Second, "failed attempts recorded", failures(n, 3))
	secretCam := n.secret
	n.close(t)

	recv := &hookReceiver{status: http.StatusServiceUnavailable}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen on the webhook's port again: %v", err)
	}
	hs := &http.Server{Handler: recv}
	go hs.Serve(l)
	defer hs.Close()

	n = startNode(t, data, secretCam, cfg)
	// The position and the failures survived the restart.
	if st, _ := n.srv.Catalog.Webhooks(ctx); st[0].Delivered != 0 || st[0].Attempts < 3 {
		t.Fatalf("state after restart: %+v", st)
	}
	n.postEvent(t, `{"type":"warning","n":2}`)
	waitFor(t, 10*time.Second, "three 503s", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.attempts >= 3
	})
	recv.setStatus(0)

	all := n.outbox(t)
	waitFor(t, 20*time.Second, "every alert delivered", func() bool { return len(recv.deliveries()) >= len(all) })
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	got := recv.deliveries()
	if len(got) != len(all) {
		t.Fatalf("%d deliveries for %d alerts", len(got), len(all))
	}
	for i, d := range got {
		want, _ := json.Marshal(all[i])
		if d.Event != all[i].Type || d.Delivery != strconv.FormatInt(all[i].ID, 10) || string(d.Body) != string(want) {
			t.Fatalf("delivery %d: %s %s %s\nwant %s %d %s", i, d.Event, d.Delivery, d.Body, all[i].Type, all[i].ID, want)
		}
		if err := backoffice.VerifySignature(secret, d.Signature, d.Body, time.Now(), 5*time.Minute); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	t.Logf("%d alerts delivered once each, in order, after %d attempts", len(got), recv.attempts)
	// What a receiver must refuse: a changed body, an old timestamp.
	d := got[0]
	if err := backoffice.VerifySignature(secret, d.Signature, []byte(strings.Replace(string(d.Body), camID, "cam2", 1)), time.Now(), 5*time.Minute); err == nil {
		t.Fatal("tampered body verified")
	}
	if err := backoffice.VerifySignature(secret, d.Signature, d.Body, time.Now().Add(6*time.Minute), 5*time.Minute); err == nil {
		t.Fatal("old timestamp verified")
	}
	if st, _ := n.srv.Catalog.Webhooks(ctx); st[0].Delivered != all[len(all)-1].ID || st[0].Attempts != 0 {
		t.Fatalf("state after delivery: %+v", st)
	}
}

// TestSlowClient: a client that stops reading is disconnected and never
// delays another client.
func TestSlowClient(t *testing.T) {
	// The queue holds every alert of the test, so the fast client can never
	// be cut off for a burst; the slow one goes when its socket stays full
	// past the write timeout (overflow is TestHubFanOut's).
	n := startNode(t, dataDir(t), "", backoffice.Config{ClientBuffer: 256, WriteTimeout: 500 * time.Millisecond})
	// The slow client: a tiny receive buffer, and it never reads.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow, err := d.Dial("tcp", n.srv.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "GET /api/v1/events HTTP/1.1\r\nHost: camvault\r\nAuthorization: Bearer %s\r\n\r\n", tokCarol)
	fast, _ := dialSSE(t, n.eventsURL(), tokAlice, "")
	waitFor(t, 5*time.Second, "two SSE clients", func() bool { return gauge(t, n, "camvault_sse_clients") == 2 })

	// 120 alerts of 64 KiB: more than the slow client's socket buffers.
	big := strings.Repeat("x", 64<<10)
	committed := map[int64]time.Time{}
	ctx := context.Background()
	for i := 0; i < 120; i++ {
		if err := n.srv.Catalog.AddAlert(ctx, "camera.location", camID, "", time.Now(), map[string]any{"note": big}); err != nil {
			t.Fatal(err)
		}
		committed[int64(i+1)] = time.Now()
	}
	var worst time.Duration
	for i := 0; i < 120; i++ {
		ev := fast.next(t, 10*time.Second)
		if ev.ID != int64(i+1) {
			t.Fatalf("fast client got id %d, want %d", ev.ID, i+1)
		}
		worst = max(worst, ev.At.Sub(committed[ev.ID]))
	}
	t.Logf("fast client: worst commit → received %v while the slow client stalled", worst.Round(time.Millisecond))
	if worst > latencyBound {
		t.Fatalf("fast client delayed %v", worst)
	}
	waitFor(t, 10*time.Second, "the slow client dropped", func() bool { return counter(t, n, "camvault_sse_slow_clients_dropped_total") >= 1 })
	// Its connection ends: reading what was buffered reaches the end
	// instead of blocking.
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, slow); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("slow client's connection: %v", err)
	}
	if g := gauge(t, n, "camvault_sse_clients"); g != 1 {
		t.Fatalf("%v SSE clients, want 1", g)
	}
}

func metric(t *testing.T, n *node, name string) *dto.Metric {
	t.Helper()
	mfs, err := n.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			return mf.Metric[0]
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func gauge(t *testing.T, n *node, name string) float64 {
	return metric(t, n, name).GetGauge().GetValue()
}

func counter(t *testing.T, n *node, name string) float64 {
	return metric(t, n, name).GetCounter().GetValue()
}
