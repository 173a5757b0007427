package commit

import (
	"context"
	"errors"
	"testing"
	"time"

	"camvault/media"
)

// TestGapsCarryTheirWallClockRange: the gap of a segment that could not
// be stored and the gap of media lost in transit say when the missing
// footage was recorded (from_wall, to_wall: the span's start and end), not
// only when the loss was committed (wall).
func TestGapsCarryTheirWallClockRange(t *testing.T) {
	c, cat, _ := newCommitter(t)
	st := c.Stage()
	wall := time.Date(2026, 12, 7, 9, 59, 0, 0, time.UTC)
	failed := item(media.ItemSegment, "inc-1", 2) // media 4 s..6 s
	failed.Header.Wall, failed.Err = wall, errors.New("disk full")
	lost := item(media.ItemGap, "inc-1", 3) // media 6 s..8 s
	lost.Header.Wall, lost.Note = wall.Add(2*time.Second), "packets lost"
	for _, it := range []*media.Item{failed, lost} {
		if _, err := st.Fn(context.Background(), it); err != nil {
			t.Fatal(err)
		}
	}
	if len(cat.records) != 2 {
		t.Fatalf("%d records, want 2 gaps", len(cat.records))
	}
	for i, want := range [][2]time.Time{{wall, wall.Add(2 * time.Second)}, {wall.Add(2 * time.Second), wall.Add(4 * time.Second)}} {
		r := cat.records[i]
		if r.FromWall == nil || r.ToWall == nil || !r.FromWall.Equal(want[0]) || !r.ToWall.Equal(want[1]) || !r.Wall.Equal(c.Now()) {
			t.Fatalf("gap %d (%s): from %v to %v at %v, want %v to %v", i, r.Note, r.FromWall, r.ToWall, r.Wall, want[0], want[1])
		}
	}
}
