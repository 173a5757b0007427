package backoffice

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"camvault/catalog"
)

// memStore is an in-memory outbox and webhook state.
type memStore struct {
	mu     sync.Mutex
	alerts []catalog.Alert
	hooks  map[string]*catalog.WebhookState
}

func (m *memStore) add(n int, typ string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := 0; i < n; i++ {
		m.alerts = append(m.alerts, catalog.Alert{ID: int64(len(m.alerts) + 1), Type: typ, Camera: "cam1", At: time.Now()})
	}
}

func (m *memStore) AlertsAfter(_ context.Context, after int64, limit int) ([]catalog.Alert, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []catalog.Alert
	for _, a := range m.alerts {
		if a.ID > after && len(out) < limit {
			out = append(out, a)
		}
	}
	return out, nil
}

func (m *memStore) AlertsBefore(_ context.Context, before int64, limit int) ([]catalog.Alert, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []catalog.Alert
	for i := len(m.alerts) - 1; i >= 0 && len(out) < limit; i-- {
		if m.alerts[i].ID < before {
			out = append(out, m.alerts[i])
		}
	}
	return out, nil
}

func (m *memStore) LastAlertID(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.alerts)), nil
}

func (m *memStore) EnsureWebhook(_ context.Context, url string, now time.Time) (catalog.WebhookState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hooks == nil {
		m.hooks = map[string]*catalog.WebhookState{}
	}
	if m.hooks[url] == nil {
		m.hooks[url] = &catalog.WebhookState{URL: url, Delivered: int64(len(m.alerts)), CreatedAt: now}
	}
	return *m.hooks[url], nil
}

func (m *memStore) WebhookDelivered(_ context.Context, url string, id int64, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hooks[url]
	h.Delivered, h.Attempts, h.LastAttempt, h.LastError = max(h.Delivered, id), 0, at, ""
	return nil
}

func (m *memStore) WebhookFailed(_ context.Context, url string, at time.Time, why string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hooks[url]
	h.Attempts, h.LastAttempt, h.LastError = h.Attempts+1, at, why
	return nil
}

func (m *memStore) state(url string) catalog.WebhookState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.hooks[url]
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestHubFanOut: a burst larger than one page reaches a subscriber whole
// and in order; a subscriber that does not keep up is cut off without
// holding up the other; closing the hub ends every subscription.
func TestHubFanOut(t *testing.T) {
	st := &memStore{}
	st.add(5, "old") // before the hub starts: not fanned out
	h := newHub(st, 5*time.Millisecond, quiet)
	if err := h.init(context.Background()); err != nil {
		t.Fatal(err)
	}
	fast, from := h.subscribe(2000)
	slow, _ := h.subscribe(10)
	if from != 5 {
		t.Fatalf("subscribed at %d, want 5", from)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.run(ctx); close(done) }()
	st.add(3*pageSize+7, "camera.location")
	for want := int64(6); want <= int64(5+3*pageSize+7); want++ {
		select {
		case a := <-fast.c:
			if a.ID != want {
				t.Fatalf("got id %d, want %d", a.ID, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("id %d never came", want)
		}
	}
	n := 0
	for range slow.c { // closed once its 10 slots were full
		n++
	}
	if n != 10 || !slow.overflowed {
		t.Fatalf("slow subscriber: %d alerts, overflowed %v", n, slow.overflowed)
	}
	h.unsubscribe(slow) // already gone: no double close
	cancel()
	<-done
	if _, ok := <-fast.c; ok {
		t.Fatal("subscription open after the hub stopped")
	}
	if late, _ := h.subscribe(1); func() bool { _, ok := <-late.c; return ok }() {
		t.Fatal("subscription to a stopped hub is open")
	}
}

// TestWebhookBackoff: failed attempts are spaced by a doubling delay (at
// least half of it, the jitter's floor) capped at RetryMax; a redirect is
// not an acknowledgement; the first 2xx ends the retries and moves the
// position.
func TestWebhookBackoff(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		switch {
		case len(at) == 1:
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case len(at) < 7:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer hs.Close()
	st := &memStore{}
	cfg := Config{Webhooks: []string{hs.URL}, WebhookSecret: []byte("0123456789abcdef"), Poll: 5 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 80 * time.Millisecond}
	s, err := New(cfg, st, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st.add(1, "incident.started")
	deadline := time.Now().Add(10 * time.Second)
	for st.state(hs.URL).Delivered != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: %+v", st.state(hs.URL))
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 7 {
		t.Fatalf("%d attempts, want 7 (a redirect, five 503s, a 200)", len(at))
	}
	delay := cfg.RetryMin
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < delay/2 {
			t.Errorf("attempt %d came %v after the previous, want at least %v", i+1, gap, delay/2)
		}
		delay = min(2*delay, cfg.RetryMax)
	}
	if got := st.state(hs.URL); got.Attempts != 0 || got.LastError != "" || got.Delivered != 1 {
		t.Fatalf("state %+v", got)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no secret":    {Webhooks: []string{"https://a.example/"}},
		"short secret": {Webhooks: []string{"https://a.example/"}, WebhookSecret: []byte("short")},
		"scheme":       {Webhooks: []string{"ftp://a.example/"}, WebhookSecret: []byte("0123456789abcdef")},
		"relative":     {Webhooks: []string{"/hook"}, WebhookSecret: []byte("0123456789abcdef")},
		"twice":        {Webhooks: []string{"https://a.example/", "https://a.example/"}, WebhookSecret: []byte("0123456789abcdef")},
	} {
		if _, err := New(cfg, &memStore{}, nil, quiet); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
