package retention

import (
	"context"
	"sync"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/internal/pgtest"
	"camvault/storage/fs"
)

// countingStore counts the deletes asked of the store shared by every
// node, by key, and takes a while over each, as a remote store does (so
// that sweeps started together overlap).
type countingStore struct {
	*fs.Store
	mu      *sync.Mutex
	deletes map[string]int
}

func (c countingStore) Delete(ctx context.Context, key string) error {
	c.mu.Lock()
	c.deletes[key]++
	c.mu.Unlock()
	time.Sleep(10 * time.Millisecond)
	return c.Store.Delete(ctx, key)
}

// node is a second node of w: its own catalog connections and store
// handle on w's catalog and store directory.
func (w *world) node(t *testing.T, dsn string, mu *sync.Mutex, deletes map[string]int) *Sweeper {
	t.Helper()
	cat, err := catalog.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	st, err := fs.Open(w.dir, fs.WithClock(w.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Sweeper{Catalog: cat, Store: countingStore{st, mu, deletes}, Now: w.clock.now, Lock: cat}
}

// TestSweepersOnTwoNodes: two nodes sweeping a shared catalog and store at
// the same moment ask the store to delete each due chunk once, never a
// held one or one not yet due; then a sweep killed midway on one node is
// finished by the other.
func TestSweepersOnTwoNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewCatalog(t)
	w := newWorldOn(t, dsn)
	ctx := context.Background()
	var due []string
	for range 3 {
		due = append(due, w.record(t, day0, 4))
	}
	held := w.record(t, day0, 2)
	w.clock.day(10)
	notYet := w.record(t, w.clock.now(), 2)
	if err := PlaceHold(ctx, w.cat, w.store, catalog.Hold{Incident: held, Reason: "r", Reference: "PR-1", PlacedBy: "admin", PlacedAt: w.clock.now()}); err != nil {
		t.Fatal(err)
	}
	var dueObjs, keptObjs []string
	for _, inc := range due {
		dueObjs = append(dueObjs, must(w.cat.LiveObjects(ctx, inc))...)
	}
	for _, inc := range []string{held, notYet} {
		keptObjs = append(keptObjs, must(w.cat.LiveObjects(ctx, inc))...)
	}

	w.clock.day(30)
	var mu sync.Mutex
	deletes := map[string]int{}
	nodes := []*Sweeper{w.node(t, dsn, &mu, deletes), w.node(t, dsn, &mu, deletes)}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, sw := range nodes {
		wg.Go(func() {
			<-start
			if _, _, err := sw.SweepExclusive(ctx, false); err != nil {
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, o := range dueObjs {
		if n := deletes[o]; n != 1 {
			t.Errorf("due chunk %s: %d deletes, want 1", o, n)
		}
	}
	for _, o := range keptObjs {
		if n := deletes[o]; n != 0 {
			t.Errorf("held or not yet due chunk %s: %d deletes", o, n)
		}
	}
	for _, inc := range due {
		if in := must(w.cat.Incident(ctx, inc)); in.Status != catalog.StatusDeleted || w.exists(t, inc) {
			t.Errorf("due incident %s: %s after the sweeps", inc, in.Status)
		}
	}
	if !w.exists(t, held) || !w.exists(t, notYet) {
		t.Fatal("a held or not yet due incident lost footage")
	}

	// Killed midway: node 0's sweep stops after its first delete (gone
	// from the store, still live in the catalog); node 1's next sweep
	// finishes the work.
	w.clock.day(45)
	kctx, cancel := context.WithCancel(ctx)
	killer := nodes[0]
	killer.Store = &killingStore{Store: killer.Store.(countingStore).Store, n: 1, cancel: cancel}
	if _, _, err := killer.SweepExclusive(kctx, false); err == nil {
		t.Fatal("the killed sweep reported success")
	}
	if in := must(w.cat.Incident(ctx, notYet)); in.Status == catalog.StatusDeleted {
		t.Fatal("the killed sweep finished everything")
	}
	if _, ran, err := nodes[1].SweepExclusive(ctx, false); err != nil || !ran {
		t.Fatalf("the other node's sweep: ran %v, %v", ran, err)
	}
	if in := must(w.cat.Incident(ctx, notYet)); in.Status != catalog.StatusDeleted || w.exists(t, notYet) {
		t.Fatalf("incident left by the killed sweep: %s", in.Status)
	}
	if !w.exists(t, held) {
		t.Fatal("held incident lost footage")
	}
}
