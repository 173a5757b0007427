package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/internal/pgtest"
)

// TestServeOnPostgres: `serve --catalog postgres://...` records a camera
// (camvault simulate over RTSP) into a PostgreSQL catalog, with no SQLite
// file in the data directory, and `verify` of the stored incident passes
// on the same catalog; a --catalog URL with a password in it is refused
// (exit 2) without echoing the password.
func TestServeOnPostgres(t *testing.T) {
	requireTool(t, "ffmpeg")
	dsn := pgtest.NewCatalog(t)
	data := filepath.Join(t.TempDir(), "data")
	mustCamvault(t, "keygen", "--data", data)
	s := newServer(t, data, "--catalog", dsn)
	mustCamvault(t, "simulate", "--data", data, "--catalog", dsn, "--cameras", "1", "--duration", "4s", "--bitrate", "1M",
		"--rtsp", fmt.Sprintf("127.0.0.1:%d", s.rtspPort))

	var inc incidentRow
	for deadline := time.Now().Add(30 * time.Second); inc.ID == "" || inc.Status == "open"; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no ended incident in the PostgreSQL catalog\n%s", s.logs())
		}
		var rows []incidentRow
		if err := json.Unmarshal([]byte(mustCamvault(t, "incidents", "--json", "--data", data, "--catalog", dsn)), &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) == 1 {
			inc = rows[0]
		}
	}
	if inc.Camera != "sim0" || inc.Status != "closed" || inc.Chunks < 2 {
		t.Fatalf("incident %+v: want sim0's, closed, with its chunks", inc)
	}
	if _, err := os.Stat(filepath.Join(data, "catalog.db")); !os.IsNotExist(err) {
		t.Fatalf("a SQLite catalog in the data directory beside PostgreSQL: %v", err)
	}
	// The last checkpoint's anchor is written shortly after the end: 3
	// (passed, not yet anchored) until then.
	var out, errs string
	code := -1
	for deadline := time.Now().Add(20 * time.Second); code != 0 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		out, errs, code = camvault(t, "verify", inc.ID, "--data", data, "--catalog", dsn, "--identity", identityPath(data))
	}
	if code != 0 {
		t.Fatalf("verify %s on PostgreSQL: exit %d\n%s\n%s", inc.ID, code, out, errs)
	}

	_, errs, code = camvault(t, "incidents", "--data", data, "--catalog", "postgres://camvault:hunter2secret@127.0.0.1/camvault")
	if code != 2 || strings.Contains(errs, "hunter2secret") || !strings.Contains(errs, "PGPASSWORD") {
		t.Fatalf("a password on the command line: exit %d, %q; want 2, refused without repeating it", code, errs)
	}
}
