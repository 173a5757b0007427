package catalog

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
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

// TestSettleAbandoned: node a dies mid-session and its camera never comes
// back. Until its lease has been expired for the grace window nothing
// settles it; then nodes b and c, settling at the same moment, end it
// once between them: a gap from its last durable chunk and its end at
// the lease's expiry, the incident interrupted. b's live session (its
// lease renewed) is not touched, nor is a session of the settling node
// itself; a's late writes fail with ErrLeaseLost.
func TestSettleAbandoned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b, dsn := twoNodes(t, engines[1])
	c, err := Open(dsn, WithNode("c"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, cam := range []string{"cam2", "cam3"} {
		if err := a.AddCamera(ctx, Camera{ID: cam, Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	startCam := func(on *Catalog, cam, session string) SessionStarted {
		t.Helper()
		s, err := on.StartSession(ctx, SessionStart{Camera: cam, Officer: "o", Session: session, WrappedKey: []byte("k"),
			Now: t0, Grace: time.Minute, Lease: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sa := startCam(a, "cam1", "sa") // a's lease runs to t0+10s, never renewed
	if _, err := a.CommitChunk(ctx, chunkOf(sa, "sa", 1, t0.Add(2*time.Second))); err != nil {
		t.Fatal(err)
	}
	sb := startCam(b, "cam2", "sb")
	sc := startCam(c, "cam3", "sc")
	const grace = time.Minute

	// 30 s after a's lease expired: the camera may still come back.
	for _, n := range []*Catalog{b, c} {
		if got, err := n.SettleAbandoned(ctx, t0.Add(40*time.Second), grace); err != nil || len(got) != 0 {
			t.Fatalf("node %s within the grace window: %v, %v; want nothing settled", n.Node(), got, err)
		}
	}
	now := t0.Add(10*time.Second + grace + time.Second)
	for _, s := range []struct {
		on           *Catalog
		cam, session string
	}{{b, "cam2", "sb"}, {c, "cam3", "sc"}} {
		if err := s.on.RenewLease(ctx, s.cam, s.session, now, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var got [2][]string
	var errs [2]error
	gate := make(chan struct{})
	for i, n := range []*Catalog{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			got[i], errs[i] = n.SettleAbandoned(ctx, now, grace)
		}()
	}
	close(gate)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("settling: %v, %v", errs[0], errs[1])
	}
	if all := append(got[0], got[1]...); len(all) != 1 || all[0] != sa.Incident {
		t.Fatalf("settled by b %v and by c %v; want a's incident %s once", got[0], got[1], sa.Incident)
	}
	for _, n := range []*Catalog{b, c} {
		if again, err := n.SettleAbandoned(ctx, now, grace); err != nil || len(again) != 0 {
			t.Fatalf("node %s settling again: %v, %v; want nothing", n.Node(), again, err)
		}
	}
	// c's own session, its lease long expired, is c's recorder's
	// business, never its settler's.
	if _, err := c.db.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE session = 'sc'`, t0); err != nil {
		t.Fatal(err)
	}
	if own, err := c.SettleAbandoned(ctx, now, grace); err != nil || len(own) != 0 {
		t.Fatalf("node c settling its own session: %v, %v; want nothing", own, err)
	}

	recs := records(t, a, sa.Incident)
	var kinds []string
	for _, r := range recs {
		kinds = append(kinds, r.Kind+"/"+r.Session)
	}
	if got, want := strings.Join(kinds, " "), "session/sa chunk/sa gap/sa end/sa"; got != want {
		t.Fatalf("a's chain %s, want %s", got, want)
	}
	expiry := t0.Add(10 * time.Second)
	gap, end := recs[2], recs[3]
	if gap.FromSeq != 1 || gap.Seq != 2 || gap.ToWall == nil || !gap.ToWall.Equal(expiry) ||
		!strings.Contains(gap.Note, "node a stopped renewing") || !strings.Contains(gap.Note, "no node took the camera over") {
		t.Errorf("gap: %+v", gap)
	}
	if !end.Wall.Equal(expiry) || !strings.HasPrefix(end.Note, StatusInterrupted+": node a stopped renewing") || !strings.Contains(end.Note, "settled by node") {
		t.Errorf("end: %+v", end)
	}
	if inc, err := a.Incident(ctx, sa.Incident); err != nil || inc.Status != StatusInterrupted {
		t.Errorf("a's incident: %+v, %v; want interrupted", inc, err)
	}
	if _, err := a.CommitChunk(ctx, chunkOf(sa, "sa", 2, now)); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a's chunk after the settlement: %v, want ErrLeaseLost", err)
	}
	// The live sessions record on.
	if _, err := b.CommitChunk(ctx, chunkOf(sb, "sb", 1, now)); err != nil {
		t.Errorf("b's live session: %v", err)
	}
	if _, err := c.CommitChunk(ctx, chunkOf(sc, "sc", 1, now)); err != nil {
		t.Errorf("c's own session: %v", err)
	}
	// The camera back later starts a new incident on any node.
	if s, err := startOn(b, "sa-back", now.Add(time.Minute)); err != nil || s.Resumed {
		t.Errorf("the camera back after the settlement: %+v, %v; want a new incident", s, err)
	}
}
