package catalog

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"camvault/format/manifest"
)

// TestCrashAndReconnectGapsCoverTheRealHole: the last chunk durable
// before a crash ends at t0+4s, the server restarts at t0+6.229s and the
// camera is back at t0+7s. The outage is the 3.0 s from t0+4s to t0+7s:
// the gaps say so, with the last durable chunk (session, seq, media end)
// they follow, rather than "reconnect after 771ms" stamped at the restart.
func TestCrashAndReconnectGapsCoverTheRealHole(t *testing.T) {
	forEachEngine(t, testCrashAndReconnectGapsCoverTheRealHole)
}

func testCrashAndReconnectGapsCoverTheRealHole(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s1 := start(t, c, "s1", t0)
	for seq, span := range [][2]time.Duration{{0, 0}, {0, 2 * time.Second}, {2 * time.Second, 4 * time.Second}} {
		if _, err := c.CommitChunk(ctx, Chunk{Incident: s1.Incident, Session: "s1", Track: "original", Seq: uint64(seq),
			Object: "o" + string(rune('0'+seq)), StartNS: int64(span[0]), EndNS: int64(span[1]), Wall: t0.Add(span[0]),
			RetainUntil: t0.Add(time.Hour), PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	// A derived chunk committed later must not be taken for footage.
	if _, err := c.CommitChunk(ctx, Chunk{Incident: s1.Incident, Session: "s1", Track: "proxy", Seq: 2, Object: "p2",
		StartNS: int64(2 * time.Second), EndNS: int64(5 * time.Second), Wall: t0.Add(2 * time.Second),
		RetainUntil: t0.Add(time.Hour), PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
		t.Fatal(err)
	}
	restart, back := t0.Add(6229*time.Millisecond), t0.Add(7*time.Second)
	if _, err := c.InterruptRunning(ctx, restart); err != nil {
		t.Fatal(err)
	}
	if s2 := start(t, c, "s2", back); !s2.Resumed || s2.Incident != s1.Incident {
		t.Fatalf("reconnect within grace: %+v", s2)
	}
	lines, err := c.ManifestLines(ctx, s1.Incident)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := manifest.VerifyChain(s1.Incident, lines); err != nil {
		t.Fatalf("manifest with ranged gaps: %v", err)
	}
	var gaps []map[string]any
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		if r["kind"] == manifest.KindGap {
			gaps = append(gaps, r)
		}
	}
	if len(gaps) != 2 {
		t.Fatalf("%d gap records, want the crash's and the reconnect's: %q", len(gaps), lines)
	}
	lastEnd := t0.Add(4 * time.Second).Format(time.RFC3339Nano)
	want := func(g map[string]any, field string, v any) {
		t.Helper()
		if g[field] != v {
			t.Errorf("gap %q: %s = %v, want %v", g["note"], field, g[field], v)
		}
	}
	crash, reconnect := gaps[0], gaps[1]
	// The crash: after seq 2 of s1 (media 4 s, wall t0+4s) nothing is
	// durable up to the restart; seq 3 was the segment being cut.
	for field, v := range map[string]any{"session": "s1", "seq": 3.0, "start_ns": 4e9, "end_ns": 6.229e9,
		"from_session": "s1", "from_seq": 2.0, "from_ns": 4e9, "from_wall": lastEnd, "to_wall": restart.Format(time.RFC3339Nano)} {
		want(crash, field, v)
	}
	// The reconnect: the whole hole, from the last durable chunk to the
	// camera's return.
	for field, v := range map[string]any{"from_session": "s1", "from_seq": 2.0, "from_ns": 4e9, "from_wall": lastEnd,
		"to_wall": back.Format(time.RFC3339Nano)} {
		want(reconnect, field, v)
	}
	if note, _ := reconnect["note"].(string); !strings.HasPrefix(note, "reconnect after 3s: no footage from 2026-11-27T10:00:04.000Z to 2026-11-27T10:00:07.000Z") {
		t.Errorf("reconnect note %q", note)
	}
}

// TestCrashGapWithoutFootage: a session that crashed before any media
// chunk was durable has its gap from the session's start.
func TestCrashGapWithoutFootage(t *testing.T) { forEachEngine(t, testCrashGapWithoutFootage) }

func testCrashGapWithoutFootage(t *testing.T, e engine) {
	ctx := context.Background()
	c := openTest(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s := start(t, c, "s1", t0)
	if _, err := c.InterruptRunning(ctx, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	lines, _ := c.ManifestLines(ctx, s.Incident)
	var gap map[string]any
	json.Unmarshal(lines[1], &gap)
	if gap["kind"] != manifest.KindGap || gap["from_wall"] != t0.Format(time.RFC3339Nano) || gap["from_seq"] != nil ||
		gap["seq"] != 1.0 || gap["end_ns"] != 3e9 || gap["to_wall"] != t0.Add(3*time.Second).Format(time.RFC3339Nano) {
		t.Fatalf("crash gap without footage: %s", lines[1])
	}
}
