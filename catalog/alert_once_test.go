package catalog

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAlertOnce: the first call queues the alert, later ones (any session
// of the incident) do not; other incidents and types are independent.
func TestAlertOnce(t *testing.T) { forEachEngine(t, testAlertOnce) }

func testAlertOnce(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	inc := start(t, c, "s1", t0).Incident
	for i, want := range []bool{true, false, false} {
		got, err := c.AlertOnce(ctx, "transcode.shed", inc, t0.Add(time.Duration(i)*time.Second), map[string]any{"seq": i})
		if err != nil || got != want {
			t.Fatalf("call %d: queued %v, %v; want %v", i, got, err, want)
		}
	}
	if _, err := c.AlertOnce(ctx, "transcode.shed", "inc-none", t0, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown incident: %v", err)
	}
	alerts, err := c.AlertsAfter(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range alerts {
		if a.Type == "transcode.shed" {
			n++
			if a.Incident != inc || a.Camera != "cam1" || a.Data["seq"] != float64(0) {
				t.Fatalf("alert %+v", a)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d transcode.shed alerts, want 1", n)
	}
}
