package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
)

func sweep(t *testing.T, data, now string) (chunks, incidents int) {
	t.Helper()
	out := mustCamvault(t, "retention", "sweep", "--now", now, "--data", data)
	var res struct {
		Chunks    int               `json:"chunks"`
		Incidents []json.RawMessage `json:"incidents"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("sweep output: %v\n%s", err, out)
	}
	return res.Chunks, len(res.Incidents)
}

// TestRetentionAndHolds: footage is gone after 28 days unless held; the
// CLI moves the clock with --now, the store enforces deadlines itself.
func TestRetentionAndHolds(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1", "cam2")
	s := newServer(t, data)
	ids := map[string]string{}
	for _, cam := range []string{"cam1", "cam2"} {
		pub := newRTSPCamera(t, c, false)
		pub.aus = pub.aus[:90]
		if err := pub.run(s.rtspURL(cam, secrets[cam], cam), gortsplib.TransportTCP); err != nil {
			t.Fatal(err)
		}
		ids[cam] = waitIncidentEnded(t, s, cam).ID
	}
	// files counts an incident's objects in the store: chunks and
	// checkpoint anchors.
	files := func(inc string) int {
		n := 0
		filepath.Walk(filepath.Join(data, "chunks", inc), func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && (strings.HasSuffix(p, ".chunk") || strings.Contains(p, "/checkpoints/")) {
				n++
			}
			return nil
		})
		return n
	}
	if anchors, _ := filepath.Glob(filepath.Join(data, "chunks", ids["cam1"], "checkpoints", "*.json")); len(anchors) == 0 {
		t.Fatal("no checkpoint anchored in the store")
	}
	if _, _, code := camvault(t, "hold", "place", ids["cam2"], "--reason", "complaint", "--data", data); code != 2 {
		t.Fatal("hold without a police report reference accepted")
	}
	mustCamvault(t, "hold", "place", ids["cam2"], "--reason", "assault complaint", "--reference", "PR-2026-0042", "--by", "admin1", "--data", data)

	for _, r := range incidents(t, data) {
		if r.Held != (r.ID == ids["cam2"]) || r.RetainUntil == nil || r.RetainUntil.Sub(r.StartedAt) < 28*24*time.Hour-time.Minute || r.RetainUntil.Sub(r.StartedAt) > 28*24*time.Hour+time.Minute {
			t.Fatalf("incident %s: held %v, deadline %v for a start at %v", r.ID, r.Held, r.RetainUntil, r.StartedAt)
		}
	}
	if n, _ := sweep(t, data, "648h"); n != 0 || files(ids["cam1"]) == 0 {
		t.Fatalf("day 27: %d chunks swept", n)
	}
	if n, inc := sweep(t, data, "700h"); n == 0 || inc != 1 || files(ids["cam1"]) != 0 {
		t.Fatalf("day 29: %d chunks, %d incidents swept, %d files left", n, inc, files(ids["cam1"]))
	}
	_, e, code := camvault(t, "export", ids["cam1"], "--identity", identityPath(data), "--out", filepath.Join(t.TempDir(), "x"), "--data", data)
	if code == 0 || !strings.Contains(e, "deleted by retention on") {
		t.Fatalf("export of a deleted incident: exit %d %s", code, e)
	}
	for _, now := range []string{"700h", "9600h"} {
		sweep(t, data, now)
		if files(ids["cam2"]) == 0 {
			t.Fatalf("held incident deleted at %s", now)
		}
	}
	mustCamvault(t, "verify", ids["cam2"], "--identity", identityPath(data), "--data", data)
	mustCamvault(t, "hold", "release", ids["cam2"], "--reason", "case closed", "--by", "admin2", "--data", data)
	if _, inc := sweep(t, data, "9600h"); inc != 1 || files(ids["cam2"]) != 0 {
		t.Fatalf("released incident not deleted")
	}
	rows := incidents(t, data)
	for _, r := range rows {
		if r.Status != "deleted" {
			t.Fatalf("incident %s: status %s", r.ID, r.Status)
		}
	}
}
