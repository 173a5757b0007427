package backoffice_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"camvault/backoffice"
	"camvault/catalog"
	"camvault/internal/pgtest"
)

// pgNode is a backoffice node of a shared PostgreSQL catalog: its own
// catalog connections (and alert listener, named app+ListenerSuffix), its
// own alert service and HTTP listener.
type pgNode struct {
	cat *catalog.Catalog
	svc *backoffice.Service
	web *httptest.Server
	app string
}

// openShared opens the catalog dsn as application app.
func openShared(t testing.TB, dsn, app string) *catalog.Catalog {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	c, err := catalog.Open(u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startPGNode(t testing.TB, dsn, app string, cfg backoffice.Config) *pgNode {
	t.Helper()
	n := &pgNode{cat: openShared(t, dsn, app), app: app}
	cfg.Auth = testTokens(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := backoffice.New(cfg, n.cat, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.svc = svc
	mux := http.NewServeMux()
	svc.Register(mux)
	n.web = httptest.NewServer(mux)
	t.Cleanup(func() { n.web.Close(); svc.Close() })
	return n
}

// listenerPID returns the backend pid of the node's LISTEN connection,
// or 0 while it has none.
func listenerPID(t testing.TB, admin *sql.DB, app string) int {
	t.Helper()
	var pids []int
	rows, err := admin.Query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app+catalog.ListenerSuffix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	switch len(pids) {
	case 0:
		return 0
	case 1:
		return pids[0]
	}
	t.Fatalf("%d listeners named %s", len(pids), app)
	return 0
}

// addAlerts writes n alerts on c from `writers` goroutines at once (so
// their transactions interleave on several connections).
func addAlerts(t testing.TB, c *catalog.Catalog, writers, n int, note string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range n {
				if err := c.AddAlert(context.Background(), "camera.warning", camID, "", time.Now(),
					map[string]any{"note": fmt.Sprintf("%s %d/%d", note, w, i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// expectIDs reads events until it has len(want), asserting they are
// exactly want, in order.
func expectIDs(t testing.TB, c *sseClient, want []int64, d time.Duration) {
	t.Helper()
	for i, id := range want {
		ev := c.next(t, d)
		if ev.ID != id {
			t.Fatalf("event %d of %d: id %d, want %d (in order, no duplicates)", i+1, len(want), ev.ID, id)
		}
	}
}

func ids(alerts []catalog.Alert) []int64 {
	out := make([]int64, len(alerts))
	for i, a := range alerts {
		out[i] = a.ID
	}
	return out
}

// TestAlertsAcrossNodes: an SSE client of node B gets, in order and once
// each, every alert that node A commits, woken by PostgreSQL's
// notifications alone (B's safety poll is set to a minute); with B's
// listening connection killed, what is committed meanwhile still arrives
// (the reconnection reads the outbox after the last id seen), and so does
// what follows.
func TestAlertsAcrossNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewCatalog(t)
	a := openShared(t, dsn, "test-node-a")
	b := startPGNode(t, dsn, fmt.Sprintf("test-node-b-%d", time.Now().UnixNano()), backoffice.Config{Poll: time.Minute})
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	waitFor(t, 10*time.Second, "B's listener", func() bool { return listenerPID(t, admin, b.app) != 0 })

	c, _ := dialSSE(t, b.web.URL+"/api/v1/events", tokAlice, "")
	addAlerts(t, a, 4, 10, "before")
	got, err := a.AlertsAfter(context.Background(), 0, 1000)
	if err != nil || len(got) != 40 {
		t.Fatalf("outbox: %d alerts, %v", len(got), err)
	}
	expectIDs(t, c, ids(got), 5*time.Second)

	// Kill B's listener; commit while it reconnects.
	old := listenerPID(t, admin, b.app)
	var killed bool
	if err := admin.QueryRow(`SELECT pg_terminate_backend($1)`, old).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate B's listener %d: %v %v", old, killed, err)
	}
	addAlerts(t, a, 2, 5, "during")
	waitFor(t, 10*time.Second, "B's listener back", func() bool {
		pid := listenerPID(t, admin, b.app)
		return pid != 0 && pid != old
	})
	addAlerts(t, a, 2, 5, "after")
	all, err := a.AlertsAfter(context.Background(), got[len(got)-1].ID, 1000)
	if err != nil || len(all) != 20 {
		t.Fatalf("outbox: %d more alerts, %v", len(all), err)
	}
	expectIDs(t, c, ids(all), 5*time.Second)
	c.none(t, 200*time.Millisecond)

	// A client resuming from an id gets the rest by replay.
	mid := got[29].ID
	r, _ := dialSSE(t, b.web.URL+"/api/v1/events", tokAlice, strconv.FormatInt(mid, 10))
	expectIDs(t, r, append(ids(got[30:]), ids(all)...), 5*time.Second)
}

// TestWebhookAcrossNodes: two nodes configured with the same webhook
// deliver each alert to it once, in order, and the catalog's position
// ends at the last.
func TestWebhookAcrossNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewCatalog(t)
	recv := &hookReceiver{}
	hs := httptest.NewServer(recv)
	defer hs.Close()
	cfg := backoffice.Config{Webhooks: []string{hs.URL}, WebhookSecret: []byte(hookToken),
		Poll: 10 * time.Millisecond, RetryMin: 20 * time.Millisecond}
	a := startPGNode(t, dsn, "test-hook-a", cfg)
	startPGNode(t, dsn, "test-hook-b", cfg)
	addAlerts(t, a.cat, 3, 10, "hook")
	want, err := a.cat.AlertsAfter(context.Background(), 0, 1000)
	if err != nil || len(want) != 30 {
		t.Fatalf("outbox: %d alerts, %v", len(want), err)
	}
	last := want[len(want)-1].ID
	waitFor(t, 15*time.Second, "every alert acknowledged", func() bool {
		st, err := a.cat.EnsureWebhook(context.Background(), hs.URL, time.Now())
		return err == nil && st.Delivered == last
	})
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive now
	got := recv.deliveries()
	if len(got) != len(want) {
		t.Errorf("receiver got %d deliveries, want %d (each alert once)", len(got), len(want))
	}
	for i, d := range got {
		if i < len(want) && d.Delivery != strconv.FormatInt(want[i].ID, 10) {
			t.Fatalf("delivery %d is alert %s, want %d (in order, once each)", i+1, d.Delivery, want[i].ID)
		}
	}
}
