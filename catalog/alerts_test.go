package catalog

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestAlertsBefore: the outbox read backwards, newest first, below an id
// and a page at a time, down to the first alert.
func TestAlertsBefore(t *testing.T) { forEachEngine(t, testAlertsBefore) }

func testAlertsBefore(t *testing.T, e engine) {
	ctx := context.Background()
	c, err := Open(e.dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.AlertsBefore(ctx, 1<<62, 10); err != nil || len(got) != 0 {
		t.Fatalf("empty outbox: %v, %v", got, err)
	}
	t0 := time.Date(2026, 12, 7, 8, 36, 23, 0, time.UTC)
	for i := range 5 {
		if err := c.AddAlert(ctx, "camera.warning", "cam1", "", t0.Add(time.Duration(i)*time.Second), map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(before int64, limit int) []int64 {
		got, err := c.AlertsBefore(ctx, before, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, a := range got {
			out = append(out, a.ID)
		}
		return out
	}
	for _, tc := range []struct {
		before int64
		limit  int
		want   []int64
	}{{6, 2, []int64{5, 4}}, {4, 10, []int64{3, 2, 1}}, {1, 10, nil}, {1 << 62, 5, []int64{5, 4, 3, 2, 1}}} {
		if got := ids(tc.before, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("before %d limit %d: %v, want %v", tc.before, tc.limit, got, tc.want)
		}
	}
	got, _ := c.AlertsBefore(ctx, 6, 1)
	if len(got) != 1 || got[0].Type != "camera.warning" || !got[0].At.Equal(t0.Add(4*time.Second)) || got[0].Data["n"] != float64(4) {
		t.Errorf("newest alert: %+v", got)
	}
}
