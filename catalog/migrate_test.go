package catalog

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"camvault/internal/pgtest"
)

// TestOpenUpgradesOldCatalog: a SQLite catalog made before the schema was
// versioned (testdata/old-schema.sql: the tables as they were, with rows;
// and the same without the columns later start-ups added) is adopted and
// upgraded in place by Open: every row kept, the missing columns added,
// the version recorded, and the catalog usable and reopened unchanged.
func TestOpenUpgradesOldCatalog(t *testing.T) {
	t.Parallel()
	fixture, err := os.ReadFile(filepath.Join("testdata", "old-schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		drop []string // columns a still older catalog lacks
	}{
		{"unversioned", nil},
		{"without-later-columns", []string{"chunks.video_samples", "checkpoints.anchored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "catalog.db")
			raw, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := raw.Exec(string(fixture)); err != nil {
				t.Fatalf("load the old schema: %v", err)
			}
			for _, col := range tc.drop {
				table, column, _ := strings.Cut(col, ".")
				if _, err := raw.Exec(`ALTER TABLE ` + table + ` DROP COLUMN ` + column); err != nil {
					t.Fatal(err)
				}
			}
			raw.Close()

			c, err := Open(path)
			if err != nil {
				t.Fatalf("open the old catalog: %v", err)
			}
			defer c.Close()
			in, err := c.Incident(ctx, "inc-old")
			if err != nil || in.Camera != "cam1" || in.Status != StatusClosed || in.Chunks != 1 || in.Bytes != 1100 || in.Records != 2 ||
				!in.StartedAt.Equal(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)) {
				t.Fatalf("incident after the upgrade: %+v, %v", in, err)
			}
			if tc.drop == nil && (!in.FramesKnown || in.VideoFrames != 48) {
				t.Fatalf("frames after the upgrade: %+v", in)
			}
			if tc.drop != nil && in.FramesKnown {
				t.Fatalf("a chunk from before video_samples has a known split: %+v", in)
			}
			if cam, err := c.Camera(ctx, "cam1"); err != nil || string(cam.SecretMAC) != "mac" {
				t.Fatalf("camera: %+v, %v", cam, err)
			}
			if keys, err := c.WrappedKeys(ctx, "inc-old"); err != nil || string(keys["s-old"]) != "key" {
				t.Fatalf("wrapped keys: %v, %v", keys, err)
			}
			if lines, err := c.ManifestLines(ctx, "inc-old"); err != nil || len(lines) != 2 {
				t.Fatalf("manifest: %d lines, %v", len(lines), err)
			}
			if ins, err := c.Intents(ctx); err != nil || len(ins) != 1 || ins[0].Status != IntentQuarantined || ins[0].Note != "old note" {
				t.Fatalf("intents: %+v, %v", ins, err)
			}
			if x, err := c.ExportRequest(ctx, "x-old"); err != nil || x.RequestedBy != "ann" {
				t.Fatalf("export: %+v, %v", x, err)
			}
			if u, err := c.StaffByToken(ctx, []byte{1}); err != nil || u.Name != "ann" {
				t.Fatalf("staff token: %+v, %v", u, err)
			}
			if hooks, err := c.Webhooks(ctx); err != nil || len(hooks) != 1 || hooks[0].Delivered != 1 {
				t.Fatalf("webhooks: %+v, %v", hooks, err)
			}
			if pending, err := c.PendingAnchors(ctx, 10); err != nil || len(pending) != min(len(tc.drop), 1) {
				t.Fatalf("checkpoints without a known anchor: %d, %v", len(pending), err)
			}
			for _, col := range []string{"chunks.video_samples", "checkpoints.anchored"} {
				table, column, _ := strings.Cut(col, ".")
				var n int
				if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n); err != nil || n != 1 {
					t.Fatalf("%s after the upgrade: %d, %v", col, n, err)
				}
			}
			// New rows go on from the old ones: the outbox's ids continue.
			if err := c.AddAlert(ctx, "camera.warning", "cam1", "", time.Now(), nil); err != nil {
				t.Fatal(err)
			}
			if alerts, err := c.AlertsAfter(ctx, 0, 10); err != nil || len(alerts) != 2 || alerts[0].ID != 1 || alerts[1].ID != 2 {
				t.Fatalf("alerts: %+v, %v", alerts, err)
			}
			versions := gooseVersions(t, c)
			c.Close()
			if c, err = Open(path); err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if again := gooseVersions(t, c); !slices.Equal(again, versions) || !slices.Equal(versions, []int64{0, 1, 2, 3, 4}) {
				t.Fatalf("versions %v, then %v on reopening; want [0 1 2 3 4] both times", versions, again)
			}
		})
	}
}

// gooseVersions lists the schema versions recorded as applied, in order.
func gooseVersions(t *testing.T, c *Catalog) []int64 {
	t.Helper()
	rows, err := c.db.QueryContext(context.Background(), `SELECT version_id FROM goose_db_version WHERE is_applied ORDER BY id`)
	vs, err := scanAll(rows, err, "versions", func(sc rowScanner) (int64, error) {
		var v int64
		return v, sc.Scan(&v)
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestMigrateOnceConcurrently: nodes opening one new PostgreSQL catalog at
// the same moment all succeed, and the schema is migrated once (without
// the migration lock most runs fail: the CREATE TABLEs collide).
func TestMigrateOnceConcurrently(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewCatalog(t)
	const nodes = 6
	cats := make([]*Catalog, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range nodes {
		wg.Go(func() {
			<-start
			cats[i], errs[i] = Open(dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		defer cats[i].Close()
	}
	if vs := gooseVersions(t, cats[0]); !slices.Equal(vs, []int64{0, 1, 3, 4}) {
		t.Fatalf("versions applied %v, want [0 1 3 4] (each once)", vs)
	}
	// Each node's catalog works on the one schema.
	ctx := context.Background()
	for i, c := range cats {
		if err := c.AddAlert(ctx, "camera.warning", "cam1", "", time.Now(), map[string]any{"node": i}); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := cats[0].LastAlertID(ctx); err != nil || id != nodes {
		t.Fatalf("last alert id %d, %v; want %d", id, err, nodes)
	}
}

// TestSchemaTypes: times are timestamptz on PostgreSQL and the hot
// queries (due chunks, running sessions, live incidents, one incident's
// chunks in order, its alerts) have their indexes on both engines; the
// outbox is read after an id by its primary key.
func TestSchemaTypes(t *testing.T) { forEachEngine(t, testSchemaTypes) }

func testSchemaTypes(t *testing.T, e engine) {
	c := openTest(t, e)
	ctx := context.Background()
	list := `SELECT name FROM sqlite_master WHERE type = 'index'`
	if e.name == "postgres" {
		list = `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()`
		var typ string
		if err := c.db.QueryRowContext(ctx, `SELECT data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = 'chunks' AND column_name = 'retain_until'`).Scan(&typ); err != nil ||
			typ != "timestamp with time zone" {
			t.Fatalf("chunks.retain_until is %q (%v), want timestamptz", typ, err)
		}
	}
	rows, err := c.db.QueryContext(ctx, list)
	names, err := scanAll(rows, err, "indexes", func(sc rowScanner) (string, error) {
		var s string
		return s, sc.Scan(&s)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"chunks_due", "sessions_running", "incidents_live", "chunks_incident", "alerts_incident", "holds_active", "intents_due"} {
		if !slices.Contains(names, want) {
			t.Errorf("no index %s (have %v)", want, names)
		}
	}
}
