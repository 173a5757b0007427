package e2e

import (
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"

	"camvault/format/manifest"
	"camvault/internal/testenv"
)

// mountTmpfs mounts a tmpfs of size at a new directory for the test. It
// needs root: elsewhere the test skips, under CI=true it fails.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "a tmpfs mount (root): "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes path until the file system refuses another byte.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	for n := len(buf) / 2; n > 0; n /= 2 { // the last few blocks too
		f.Write(buf[:n])
	}
}

// unaccounted lists the footage objects in the fs store that neither a
// chunk row nor an intent accounts for.
func unaccounted(t *testing.T, data string) []string {
	t.Helper()
	rows, _, files, _ := storeState(t, data)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	known := map[string]bool{}
	for _, o := range rows {
		known[o] = true
	}
	r, err := db.Query(`SELECT object FROM intents`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var o string
		r.Scan(&o)
		known[o] = true
	}
	r.Close()
	var out []string
	for _, f := range files {
		if !known[f] {
			out = append(out, f)
		}
	}
	return out
}

// waitProbe polls path until its status is want, and returns the body.
func waitProbe(t *testing.T, s *server, path string, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := probe(t, s, path)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q after %v, want %d\n%s", path, code, body, within, want, tail(s.logs(), 6000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestFullDisk (issue 13, finding 3): the data directory is a 40 MiB
// tmpfs, catalog and chunks on it, two cameras recording (with review
// proxies and thumbnails, whose derived chunks go the same way), and the
// disk is filled. The server stays up; /healthz and /readyz say 503 with the
// reason; a new camera is refused with "storage full" (not a message about
// keyframes) and storage.full is raised; every segment the live sessions
// lose is a gap record with its seq and time range, so their manifests
// have no hole; no object in the store lacks a chunk row or an intent.
// Then the filler is deleted: health returns by itself, the new camera
// records, the live sessions go on in the same session, storage.recovered
// is raised, and after the stop every incident verifies. Before, the gap
// records and session ends could not be committed either (a stretch of
// each camera had no record at all), the new camera was refused at its
// first keyframe with "nothing recorded", and /healthz said ok.
func TestFullDisk(t *testing.T) {
	long := testClip(t, 24)
	short := testClip(t, 7)
	disk := mountTmpfs(t, "40m")
	data, secrets := setupDataAt(t, filepath.Join(disk, "data"), "cam1", "cam2", "cam3")
	s := newServer(t, data, "--min-free", "8MiB", "--disk-reserve", "4MiB", "--transcode-workers", "1")
	if _, err := os.Stat(filepath.Join(data, "reserve")); err != nil {
		t.Fatalf("no catalog reserve: %v", err)
	}

	pubErr := make(chan error, 2)
	for _, cam := range []string{"cam1", "cam2"} {
		pub := newRTSPCamera(t, long, false)
		go func() { pubErr <- pub.run(s.rtspURL(cam, secrets[cam], cam), gortsplib.TransportTCP) }()
	}
	time.Sleep(5 * time.Second) // a few segments each

	filler := filepath.Join(disk, "filler")
	fillDisk(t, filler)
	body := waitProbe(t, s, "/healthz", 503, 5*time.Second)
	if !strings.Contains(body, "storage full") {
		t.Errorf("/healthz at 100%% full: %q, want the reason", body)
	}
	if _, body := probe(t, s, "/readyz"); !strings.Contains(body, "storage full") {
		t.Errorf("/readyz at 100%% full: %q, want 503 with the reason", body)
	}
	refused := newRTSPCamera(t, short, false)
	err := refused.run(s.rtspURL("cam3", secrets["cam3"], "cam3"), gortsplib.TransportTCP)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "storage full: not accepting new incidents") {
		t.Errorf("a new camera on a full disk: %v, want 503 storage full", err)
	}
	if strings.Contains(s.logs(), "camera stopped before any keyframe") {
		t.Errorf("the refusal was reported as a stream without a keyframe\n%s", tail(s.logs(), 4000))
	}
	time.Sleep(4 * time.Second) // segments lost meanwhile
	if u := unaccounted(t, data); len(u) > 0 {
		t.Errorf("objects in the store without a chunk row or an intent on a full disk: %q", u)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitProbe(t, s, "/healthz", 200, 5*time.Second)
	waitProbe(t, s, "/readyz", 200, time.Second)
	if err := newRTSPCamera(t, short, false).run(s.rtspURL("cam3", secrets["cam3"], "cam3"), gortsplib.TransportTCP); err != nil {
		t.Errorf("cam3 after space returned: %v", err)
	}
	for range 2 {
		if err := <-pubErr; err != nil {
			t.Errorf("a live camera was cut off: %v\n%s", err, tail(s.logs(), 6000))
		}
	}
	for _, cam := range []string{"cam1", "cam2", "cam3"} {
		waitIncidentEnded(t, s, cam)
	}
	select {
	case <-s.exited:
		t.Fatalf("the server exited: %v\n%s", s.exitErr, tail(s.logs(), 6000))
	default:
	}
	if err := s.stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, tail(s.logs(), 6000))
	}

	var alerts []struct{ Type string }
	if err := json.Unmarshal([]byte(mustCamvault(t, "alerts", "--json", "--data", data)), &alerts); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, a := range alerts {
		count[a.Type]++
	}
	if count["storage.full"] != 1 || count["storage.recovered"] != 1 {
		t.Errorf("alerts %v: want storage.full and storage.recovered once each", count)
	}
	if u := unaccounted(t, data); len(u) > 0 {
		t.Errorf("objects in the store without a chunk row or an intent: %q", u)
	}

	byCamera := map[string]incidentRow{}
	for _, in := range incidents(t, data) {
		if _, dup := byCamera[in.Camera]; dup {
			t.Errorf("camera %s has two incidents: a live session did not continue", in.Camera)
		}
		byCamera[in.Camera] = in
	}
	if byCamera["cam3"].Chunks < 2 {
		t.Errorf("cam3, taken once space returned, recorded %d chunks", byCamera["cam3"].Chunks)
	}
	for _, cam := range []string{"cam1", "cam2"} {
		checkGapsCoverLoss(t, data, byCamera[cam].ID, cam)
	}
	for cam, in := range byCamera {
		if o, e, code := camvault(t, "verify", in.ID, "--identity", identityPath(data), "--data", data); code != 0 {
			t.Errorf("verify %s (%s): exit %d\n%s%s", in.ID, cam, code, o, e)
		}
	}
}

// checkGapsCoverLoss: the live camera's incident is one session whose
// original track's sequence numbers are each a chunk or a gap record (no
// hole), with at least one gap, each lost segment's gap carrying its time
// range, and chunks again after the gaps: recording went on.
func checkGapsCoverLoss(t *testing.T, data, incident, cam string) {
	t.Helper()
	sessions := map[string]bool{}
	seen := map[uint64]string{}
	var maxSeq, lastGap, lastChunk uint64
	gaps := 0
	for _, r := range manifestRecords(t, data, incident) {
		switch {
		case r.Kind == manifest.KindSession:
			sessions[r.Session] = true
		case r.Track != "original":
		case r.Kind == manifest.KindChunk:
			seen[r.Seq] = "chunk"
			maxSeq, lastChunk = max(maxSeq, r.Seq), max(lastChunk, r.Seq)
		case r.Kind == manifest.KindGap:
			gaps++
			if seen[r.Seq] == "" {
				seen[r.Seq] = "gap"
			}
			maxSeq, lastGap = max(maxSeq, r.Seq), max(lastGap, r.Seq)
			if r.FromWall == nil || r.ToWall == nil || !r.ToWall.After(*r.FromWall) || r.EndNS <= r.StartNS {
				t.Errorf("%s: gap record for seq %d without its time range: %+v", cam, r.Seq, r)
			}
		}
	}
	t.Logf("%s: original track seq 0..%d, %d gap records", cam, maxSeq, gaps)
	if len(sessions) != 1 {
		t.Errorf("%s: %d sessions, want 1: the live session continued", cam, len(sessions))
	}
	if gaps == 0 {
		t.Errorf("%s: no gap record: the full disk cost nothing?", cam)
	}
	if lastChunk <= lastGap {
		t.Errorf("%s: no chunk after the last gap (seq %d): recording did not resume", cam, lastGap)
	}
	for seq := uint64(0); seq <= maxSeq; seq++ {
		if seen[seq] == "" {
			t.Errorf("%s: seq %d has no record at all (neither chunk nor gap)", cam, seq)
		}
	}
}
