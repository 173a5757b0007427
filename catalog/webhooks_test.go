package catalog

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWebhookState: a new webhook starts at the outbox's end, keeps its
// position when seen again (and across a reopen), counts failures, and
// its position only moves forward.
func TestWebhookState(t *testing.T) { forEachEngine(t, testWebhookState) }

func testWebhookState(t *testing.T, e engine) {
	ctx := context.Background()
	path := e.dsn(t)
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if id, err := c.LastAlertID(ctx); err != nil || id != 0 {
		t.Fatalf("empty outbox: last id %d, %v", id, err)
	}
	for i := 0; i < 3; i++ {
		if err := c.AddAlert(ctx, "camera.warning", "cam1", "", t0, map[string]any{"n": 1}); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := c.LastAlertID(ctx); err != nil || id != 3 {
		t.Fatalf("last id %d, %v; want 3", id, err)
	}
	const url = "https://hooks.example/camvault"
	st, err := c.EnsureWebhook(ctx, url, t0)
	if err != nil || st.Delivered != 3 || st.Attempts != 0 || !st.CreatedAt.Equal(t0) {
		t.Fatalf("new webhook: %+v, %v", st, err)
	}
	if err := c.AddAlert(ctx, "camera.warning", "cam1", "", t0, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := c.WebhookFailed(ctx, url, t0.Add(time.Duration(i)*time.Second), "503 Service Unavailable"); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	if c, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err = c.EnsureWebhook(ctx, url, t0.Add(time.Hour))
	if err != nil || st.Delivered != 3 || st.Attempts != 2 || st.LastError != "503 Service Unavailable" ||
		!st.LastAttempt.Equal(t0.Add(time.Second)) || !st.CreatedAt.Equal(t0) {
		t.Fatalf("webhook after reopen: %+v, %v", st, err)
	}
	if err := c.WebhookDelivered(ctx, url, 4, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := c.WebhookDelivered(ctx, url, 2, t0.Add(3*time.Second)); err != nil { // a stale ack never moves it back
		t.Fatal(err)
	}
	all, err := c.Webhooks(ctx)
	if err != nil || len(all) != 1 || all[0].Delivered != 4 || all[0].Attempts != 0 || all[0].LastError != "" {
		t.Fatalf("webhooks: %+v, %v", all, err)
	}
	if err := c.WebhookFailed(ctx, "https://unknown.example/", t0, "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown webhook: %v", err)
	}
}
