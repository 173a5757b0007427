package catalog

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"camvault/internal/pgtest"
)

// TestAlertIDsFollowCommitOrder: an alert inserted while another's
// transaction is still open gets its id, and commits, only after that one
// commits, so a reader of `id > last` never passes over an id that is
// committed later.
func TestAlertIDsFollowCommitOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		c := openTest(t, e)
		ctx := context.Background()
		inserted, release := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- c.tx(ctx, func(tx *dbTx) error {
				if err := insertAlert(ctx, tx, "camera.warning", "cam1", "", time.Now(), map[string]any{"n": "first"}); err != nil {
					return err
				}
				close(inserted)
				<-release
				return nil
			})
		}()
		select {
		case <-inserted:
		case err := <-first:
			t.Fatal(err)
		}
		second := make(chan error, 1)
		go func() {
			second <- c.AddAlert(ctx, "camera.warning", "cam1", "", time.Now(), map[string]any{"n": "second"})
		}()
		select {
		case err := <-second:
			t.Fatalf("an alert committed while an earlier one's transaction was open (%v)", err)
		case <-time.After(300 * time.Millisecond):
		}
		close(release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		got, err := c.AlertsAfter(ctx, 0, 10)
		if err != nil || len(got) != 2 {
			t.Fatalf("%d alerts, %v", len(got), err)
		}
		if got[0].Data["n"] != "first" || got[1].Data["n"] != "second" {
			t.Fatalf("ids out of commit order: %v then %v", got[0].Data, got[1].Data)
		}
	})
}

// TestExclusive: on a shared catalog a job runs on one node at a time
// (another's try returns ran=false at once, another job runs), it is free
// again when the holder is done, and a holder whose lock connection is
// lost sees its context end; on SQLite it always runs.
func TestExclusive(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		ctx := context.Background()
		dsn := e.dsn(t)
		a := openDSN(t, dsn)
		b := openDSN(t, dsn)
		shared := e.name == "postgres"
		held, release := make(chan struct{}), make(chan struct{})
		holder := make(chan error, 1)
		go func() {
			_, err := a.Exclusive(ctx, "sweep", func(context.Context) error {
				close(held)
				<-release
				return nil
			})
			holder <- err
		}()
		<-held
		ran, err := b.Exclusive(ctx, "sweep", func(context.Context) error { return nil })
		if err != nil || ran == shared {
			t.Fatalf("second node while the first holds the job: ran %v, %v (shared catalog: %v)", ran, err, shared)
		}
		if ran, err := b.Exclusive(ctx, "other job", func(context.Context) error { return nil }); !ran || err != nil {
			t.Fatalf("another job: ran %v, %v", ran, err)
		}
		close(release)
		if err := <-holder; err != nil {
			t.Fatal(err)
		}
		want := errors.New("the job's own error")
		if ran, err := b.Exclusive(ctx, "sweep", func(context.Context) error { return want }); !ran || !errors.Is(err, want) {
			t.Fatalf("after release: ran %v, %v", ran, err)
		}
		if !shared {
			return
		}
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		key := uint64(lockKey("sweep"))
		ran, err = a.Exclusive(ctx, "sweep", func(ctx context.Context) error {
			var n int
			if err := admin.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
				WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1`,
				int64(key>>32), int64(key&0xffffffff)).Scan(&n); err != nil || n != 1 {
				t.Errorf("terminate the lock's connection: %d, %v", n, err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(3 * lockCheckEvery):
				return errors.New("the job went on after its lock was lost")
			}
		})
		if !ran || err != nil {
			t.Fatalf("lost lock: ran %v, %v", ran, err)
		}
		if ran, err := b.Exclusive(ctx, "sweep", func(context.Context) error { return nil }); !ran || err != nil {
			t.Fatalf("after the lost lock: ran %v, %v", ran, err)
		}
	})
}

func openDSN(t *testing.T, dsn string) *Catalog {
	t.Helper()
	c, err := Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSeveralHosts: a catalog URL may list several PostgreSQL hosts (a
// primary and its standbys) with target_session_attrs=read-write, as
// libpq's do: pgx tries them in order and keeps the first that takes
// writes, so a first host that is down (a failed primary) is passed over.
// Promotion of a real standby is not exercised here.
func TestSeveralHosts(t *testing.T) {
	u, err := url.Parse(pgtest.NewCatalog(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if h := q.Get("host"); h != "" {
		// Unix sockets: a directory where no server listens comes first.
		q.Set("host", filepath.Join(t.TempDir(), "no-server")+","+h)
	} else {
		port := u.Port()
		if port == "" {
			port = "5432"
		}
		u.Host = "127.0.0.1:1," + u.Hostname() + ":" + port
	}
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()
	c, err := Open(u.String())
	if err != nil {
		t.Fatalf("open with a dead first host: %v", err)
	}
	defer c.Close()
	if err := c.AddCamera(context.Background(), Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
		t.Fatalf("write through the second host: %v", err)
	}
	if n, err := c.CameraCount(context.Background()); err != nil || n != 1 {
		t.Fatalf("cameras: %d, %v", n, err)
	}
}
