// Package storagetest is the behaviour every storage.ChunkStore backend
// must show; fs and s3 run the same suite. Backends with a movable clock
// move it; s3, whose server keeps its own clock, really waits.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"testing"
	"time"

	"camvault/storage"
)

// Harness adapts a backend to the suite.
type Harness struct {
	// New returns an empty store.
	New func(t *testing.T) storage.ChunkStore
	// Now is the store's clock.
	Now func() time.Time
	// Short is a retention the suite can wait out (s3: seconds).
	Short time.Duration
	// Pass makes t, a time the store may still consider future, pass.
	Pass func(t *testing.T, until time.Time)
}

func get(t *testing.T, s storage.ChunkStore, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	ctx := context.Background()
	t.Run("ListAll", func(t *testing.T) {
		// The sweeper lists the whole store ("") to find what the catalog
		// does not account for: every object, and nothing else.
		s := h.New(t)
		l, ok := s.(storage.Lister)
		if !ok {
			t.Skip("not a Lister")
		}
		want := []string{"inc-1/checkpoints/000000000002.json", "inc-1/ses-1/original/00000001.chunk", "inc-2/ses-2/proxy/00000003.chunk"}
		for _, k := range want {
			if err := s.Put(ctx, k, []byte(k), h.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := l.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Fatalf("List(\"\") = %q, want %q", got, want)
		}
		if got, err := l.List(ctx, "inc-1/"); err != nil || len(got) != 2 {
			t.Fatalf("List(inc-1/) = %q, %v", got, err)
		}
	})
	t.Run("PutOnce", func(t *testing.T) {
		s := h.New(t)
		key := "inc-1/ses-1/original/00000001.chunk"
		if err := s.Put(ctx, key, []byte("first"), h.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, key, []byte("second"), h.Now().Add(time.Hour)); !errors.Is(err, storage.ErrExists) {
			t.Fatalf("second put: %v, want ErrExists", err)
		}
		if got := get(t, s, key); !bytes.Equal(got, []byte("first")) {
			t.Fatalf("object now reads %q", got)
		}
		if _, err := s.Get(ctx, "inc-1/absent.chunk"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("get absent: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "inc-1/absent.chunk"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("delete absent: %v, want ErrNotFound", err)
		}
	})
	t.Run("HostileKeys", func(t *testing.T) {
		s := h.New(t)
		for _, k := range []string{"", "../escape", "/abs", "a/../../b", "a\\b", "x\x00y", "sp ace"} {
			if err := s.Put(ctx, k, []byte("x"), h.Now().Add(time.Hour)); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
			}
		}
	})
	t.Run("DeadlineAndHold", func(t *testing.T) {
		s := h.New(t)
		deadline := h.Now().Add(h.Short)
		free, held, extended := "inc-2/a.chunk", "inc-2/b.chunk", "inc-2/c.chunk"
		for _, k := range []string{free, held, extended} {
			if err := s.Put(ctx, k, []byte(k), deadline); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, free); !errors.Is(err, storage.ErrRetained) {
			t.Fatalf("delete before the deadline: %v, want ErrRetained", err)
		}
		if err := s.SetLegalHold(ctx, held, true); err != nil {
			t.Fatal(err)
		}
		if err := s.Extend(ctx, extended, deadline.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.Extend(ctx, free, deadline.Add(-time.Minute)); err != nil { // earlier: ignored
			t.Fatal(err)
		}
		h.Pass(t, deadline)
		if err := s.Delete(ctx, held); !errors.Is(err, storage.ErrRetained) {
			t.Fatalf("delete under legal hold: %v, want ErrRetained", err)
		}
		if err := s.Delete(ctx, extended); !errors.Is(err, storage.ErrRetained) {
			t.Fatalf("delete of an extended object: %v, want ErrRetained", err)
		}
		if got := get(t, s, extended); string(got) != extended {
			t.Fatalf("extended object reads %q", got)
		}
		if err := s.Delete(ctx, free); err != nil {
			t.Fatalf("delete after the deadline: %v", err)
		}
		if _, err := s.Get(ctx, free); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		if err := s.SetLegalHold(ctx, held, false); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, held); err != nil {
			t.Fatalf("delete after release: %v", err)
		}
	})
}
