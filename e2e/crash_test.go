package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	_ "modernc.org/sqlite" // database/sql driver "sqlite": the test reads the catalog as an auditor would

	"camvault/format/manifest"
)

// buildCrashtest builds the camvault binary with the crashtest tag: its
// failpoints (internal/failpoint) read CAMVAULT_CRASH_AT and kill the
// process with SIGKILL at the hit named there, e.g. right after a put,
// before the chunk's commit. Only the crash tests' binary has them; it is
// built once per run, beside camvaultBin.
func buildCrashtest(t *testing.T) string {
	t.Helper()
	bin, err := crashtestBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// crashtestBinary builds the crashtest binary once; a test may start it
// early in a goroutine and ask for it (buildCrashtest) when it needs it.
var crashtestBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(camvaultBin), "camvault-crashtest")
	build := exec.Command("go", "build", "-race", "-tags", "crashtest", "-o", bin, "camvault/cmd/camvault")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build camvault -tags crashtest: %v\n%s", err, out)
	}
	return bin, nil
})

// storeState reads what the catalog and the store hold: the live chunk
// rows' objects, the intents, and the footage objects (chunks) and
// checkpoint anchors in the fs store.
func storeState(t *testing.T, data string) (rows []string, intents int, files []string, anchors int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.Query(`SELECT object FROM chunks WHERE deleted_at IS NULL ORDER BY object`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var o string
		if err := r.Scan(&o); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, o)
	}
	r.Close()
	// No intents table (a catalog older than it) counts as none.
	db.QueryRow(`SELECT count(*) FROM intents`).Scan(&intents)
	root := filepath.Join(data, "chunks")
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case strings.HasPrefix(filepath.Base(rel), "."), strings.HasPrefix(rel, "."):
		case strings.HasSuffix(rel, ".chunk"):
			files = append(files, rel)
		case strings.Contains(rel, "/checkpoints/"):
			anchors++
		}
		return nil
	})
	sort.Strings(files)
	return rows, intents, files, anchors
}

// manifestRecords reads an incident's manifest from the catalog.
func manifestRecords(t *testing.T, data, incident string) []manifest.Record {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := db.Query(`SELECT line FROM manifest WHERE incident = ? ORDER BY idx`, incident)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var recs []manifest.Record
	for r.Next() {
		var line []byte
		var rec manifest.Record
		if err := r.Scan(&line); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestCrashBetweenPutAndCommit (issue 13, finding 2): the server is killed
// with SIGKILL right after a chunk is linked into the fs store and before
// its catalog row commits. After the restart the catalog and the store
// agree exactly (no orphan, no row without its object, no intent left),
// the incident verifies, the durable segment is in the manifest (not
// recorded as lost), and a sweep rehearsed past every deadline leaves no
// footage object and no anchor behind.
func TestCrashBetweenPutAndCommit(t *testing.T) {
	c := testClip(t, 7)
	data, secrets := setupData(t, "cam1")
	bin := buildCrashtest(t)
	// Put 3 is original/00000002.chunk (the init segment is put 1), cut
	// at ~4 s: the point the inotify watch killed the server at.
	s := &server{t: t, data: data, bin: bin, env: []string{"CAMVAULT_CRASH_AT=store.after-put:3"}}
	s.rtspPort = freePort(t)
	s.rtp, s.rtcp = evenPortPair(t)
	s.httpPort, s.whipPort, s.icePort = freePort(t), freePort(t), freePort(t)
	s.start()
	t.Cleanup(func() { s.stop() })
	pub := newRTSPCamera(t, c, false)
	go pub.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP) // fails once the server is gone
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the crashtest hook did not kill the server\n%s", s.logs())
	}
	m := regexp.MustCompile(`failpoint: SIGKILL at store.after-put hit 3 \((\S+)\)`).FindStringSubmatch(s.logs())
	if m == nil {
		t.Fatalf("server exited (%v) without the crash hook\n%s", s.exitErr, s.logs())
	}
	durable := m[1]
	incident := strings.Split(durable, "/")[0]
	rows, _, files, _ := storeState(t, data)
	if !slices.Contains(files, durable) || slices.Contains(rows, durable) {
		t.Fatalf("the kill did not land between put and commit: %s stored %v, committed %v", durable, slices.Contains(files, durable), slices.Contains(rows, durable))
	}

	// Restart with the production build: reconcile before ingest, then a
	// clean stop.
	s.bin, s.env = "", nil
	s.start()
	// serve prints "ready" just before it installs its SIGTERM handler
	// (cmd/camvault runUntilSignal): a SIGTERM at once would find the
	// default action. The reconcile is done by "ready" anyway.
	time.Sleep(time.Second)
	if err := s.stop(); err != nil {
		t.Fatalf("stop after the restart: %v\n%s", err, s.logs())
	}
	rows, intents, files, _ := storeState(t, data)
	if !slices.Equal(rows, files) || intents != 0 {
		t.Errorf("catalog and store disagree after the restart:\nrows  %q\nfiles %q\nintents %d\n%s", rows, files, intents, s.logs())
	}
	var found bool
	for _, r := range manifestRecords(t, data, incident) {
		if r.Kind == manifest.KindChunk && r.Object == durable {
			found = true
		}
		if r.Kind == manifest.KindGap && r.Track == "original" && r.Seq == 2 {
			t.Errorf("the durable segment is recorded as lost: %+v", r)
		}
	}
	if !found {
		t.Errorf("the durable segment %s is not in the manifest", durable)
	}
	if o, e, code := camvault(t, "verify", incident, "--identity", identityPath(data), "--data", data); code != 0 {
		t.Errorf("verify %s: exit %d\n%s%s", incident, code, o, e)
	}

	// Past every deadline (a year and more: audit heads too), nothing of
	// the footage is left.
	sweep(t, data, "9600h")
	if rows, intents, files, anchors := storeState(t, data); len(rows) != 0 || intents != 0 || len(files) != 0 || anchors != 0 {
		t.Errorf("left after a sweep past every deadline: rows %q, intents %d, files %q, anchors %d", rows, intents, files, anchors)
	}
}
