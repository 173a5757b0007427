package faultstore

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"camvault/storage"
	"camvault/storage/fs"
)

func openFS(t *testing.T, f *Faults) (*Store, *fs.Store) {
	t.Helper()
	st, err := fs.Open(t.TempDir(), fs.WithFileOps(fs.FileOps{Write: f.WriteFile, Sync: f.SyncFile}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return Wrap(st, f), st
}

// TestProgrammeSkipsHitsAndClears: Skip lets calls through first, Times
// hits that many and then clears, a probability is replayed by its seed,
// and the error named is the one returned.
func TestProgrammeSkipsHitsAndClears(t *testing.T) {
	ctx := context.Background()
	refused := errors.New("refused")
	f := New(1)
	f.Set(Catalog, Fault{Skip: 1, Times: 2, Err: refused})
	var got []bool
	for range 5 {
		err := f.Inject(ctx, Catalog)
		if err != nil && !errors.Is(err, refused) {
			t.Fatalf("error %v, want %v", err, refused)
		}
		got = append(got, err != nil)
	}
	if want := []bool{false, true, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("hits %v, want %v", got, want)
	}
	if f.Hits(Catalog) != 2 || f.Calls(Catalog) != 5 {
		t.Fatalf("%d hits of %d calls", f.Hits(Catalog), f.Calls(Catalog))
	}
	draws := func(seed uint64) []bool {
		f := New(seed)
		f.Set(Get, Fault{Prob: 0.5})
		var out []bool
		for range 32 {
			out = append(out, f.Inject(ctx, Get) != nil)
		}
		return out
	}
	a, b := draws(3), draws(3)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed drew other faults")
	}
	n := 0
	for _, hit := range a {
		if hit {
			n++
		}
	}
	if n == 0 || n == len(a) {
		t.Fatalf("probability 0.5 hit %d of %d calls", n, len(a))
	}
}

// TestBlockHoldsCallsUntilReleased: a blocked operation's calls wait,
// counted, until release (or their context ends); then they go through.
func TestBlockHoldsCallsUntilReleased(t *testing.T) {
	f := New(1)
	st, _ := openFS(t, f)
	release := f.Block(Put)
	done := make(chan error, 2)
	for _, k := range []string{"a", "b"} {
		go func() { done <- st.Put(context.Background(), k, []byte(k), time.Now().Add(time.Hour)) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for now, _ := f.Waiting(Put); now < 2; now, _ = f.Waiting(Put) {
		if time.Now().After(deadline) {
			t.Fatal("puts not held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := st.Put(ctx, "c", []byte("c"), time.Now().Add(time.Hour)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a held put whose context ends: %v", err)
	}
	release()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if now, peak := f.Waiting(Put); now != 0 || peak != 3 {
		t.Fatalf("waiting %d, peak %d", now, peak)
	}
}

// TestFaultsAtTheFSStoresSeams: a write cut off midway and a failed fsync
// fail the put and leave nothing readable; a landed put reports its error
// with the object stored.
func TestFaultsAtTheFSStoresSeams(t *testing.T) {
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	data := make([]byte, 10000)
	for _, c := range []struct {
		name   string
		op     Op
		ft     Fault
		stored bool
	}{
		{"cut-write", Write, Fault{After: 100, Times: 1}, false},
		{"fsync-file", Sync, Fault{Times: 1}, false},
		{"fsync-dir", Sync, Fault{Skip: 1, Times: 1}, false},
		{"landed", Put, Fault{Landed: true, Times: 1}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := New(1)
			st, real := openFS(t, f)
			f.Set(c.op, c.ft)
			if err := st.Put(ctx, "inc/k.chunk", data, until); !errors.Is(err, ErrInjected) {
				t.Fatalf("put: %v, want the injected fault", err)
			}
			rc, err := real.Get(ctx, "inc/k.chunk")
			if c.stored {
				if err != nil {
					t.Fatalf("a landed put: %v", err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				if len(b) != len(data) {
					t.Fatalf("%d bytes stored", len(b))
				}
				return
			}
			if !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("after a failed put: %v, want not found", err)
			}
			if err := st.Put(ctx, "inc/k.chunk", data, until); err != nil {
				t.Fatalf("retry: %v", err)
			}
		})
	}
}
