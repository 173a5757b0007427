package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"camvault/internal/testenv"
	"camvault/storage"
	"camvault/storage/storagetest"
)

// clock is a settable time source for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock {
	return &clock{t: time.Now().Truncate(time.Second)}
}

func open(t *testing.T, dir string, c *clock) *Store {
	t.Helper()
	s, err := Open(dir, WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openSidecar opens a store that keeps every deadline in a sidecar and
// writes objects under temporary names, as on a file system without user
// extended attributes or O_TMPFILE.
func openSidecar(t *testing.T, dir string, c *clock) *Store {
	t.Helper()
	s := open(t, dir, c)
	s.xattr, s.unnamed = false, false
	return s
}

func read(t *testing.T, s *Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// files lists every non-directory path under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tempFiles(t *testing.T, dir string) []string {
	var out []string
	for _, f := range files(t, dir) {
		if strings.HasPrefix(filepath.Base(f), tempPrefix) {
			out = append(out, f)
		}
	}
	return out
}

func TestOpenCreatesPrivateRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "store")
	open(t, dir, newClock())
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("root mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	ctx := context.Background()
	data := []byte("sealed chunk bytes\x00\xff")
	if err := s.Put(ctx, "cam-1/inc-7/000001.chunk", data, c.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, "cam-1/inc-7/000001.chunk"); !bytes.Equal(got, data) {
		t.Fatalf("Get = %q, want %q", got, data)
	}
	// Empty objects are objects too.
	if err := s.Put(ctx, "empty", nil, c.now()); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, "empty"); len(got) != 0 {
		t.Fatalf("Get(empty) = %q", got)
	}
	if _, err := s.Get(ctx, "cam-1/missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	// A directory is not an object.
	if _, err := s.Get(ctx, "cam-1/inc-7"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get dir: %v, want ErrNotFound", err)
	}
	// Below an object: not a directory, still just not found.
	if _, err := s.Get(ctx, "empty/x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get below object: %v, want ErrNotFound", err)
	}
	if got := tempFiles(t, dir); len(got) != 0 {
		t.Fatalf("temp files left: %v", got)
	}
}

func TestPutOnce(t *testing.T) {
	c := newClock()
	s := open(t, t.TempDir(), c)
	ctx := context.Background()
	first := bytes.Repeat([]byte("A"), 4096)
	deadline := c.now().Add(48 * time.Hour)
	if err := s.Put(ctx, "k", first, deadline); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, "k", []byte("B"), c.now().Add(time.Minute))
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second Put: %v, want ErrExists", err)
	}
	if got := read(t, s, "k"); !bytes.Equal(got, first) {
		t.Fatal("content changed by a refused Put")
	}
	until, _, err := s.RetainUntil("k")
	if err != nil {
		t.Fatal(err)
	}
	if !until.Equal(deadline) {
		t.Fatalf("deadline %v changed by a refused Put, want %v", until, deadline)
	}
}

func TestObjectIsReadOnly(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	if err := s.Put(context.Background(), "a/b", []byte("x"), c.now()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o400 {
		t.Fatalf("object mode %v, want regular 0400", fi.Mode())
	}
	di, err := os.Stat(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", di.Mode().Perm())
	}
}

func TestConcurrentPutSameKey(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	const n = 16
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 64<<10) }
	deadline := func(i int) time.Time { return c.now().Add(time.Duration(i+1) * time.Hour) }

	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Put(context.Background(), "race/k", payload(i), deadline(i))
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("Puts %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Fatalf("Put %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Put succeeded")
	}
	if got := read(t, s, "race/k"); !bytes.Equal(got, payload(winner)) {
		t.Fatalf("content is not the winner's payload intact")
	}
	// A loser must not have replaced the winner's deadline with its own.
	until, _, err := s.RetainUntil("race/k")
	if err != nil {
		t.Fatal(err)
	}
	if !until.Equal(deadline(winner)) {
		t.Fatalf("deadline %v, want winner's %v", until, deadline(winner))
	}
	if got := tempFiles(t, dir); len(got) != 0 {
		t.Fatalf("temp files left: %v", got)
	}
}

func TestHostileKeys(t *testing.T) {
	c := newClock()
	base := t.TempDir()
	dir := filepath.Join(base, "store")
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openSidecar(t, dir, c)
	// Symlinks planted under the root, in the object tree and the metadata tree.
	if err := os.Symlink(outside, filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, metaDir, "meta-evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../"+filepath.Base(outside), filepath.Join(dir, "rel")); err != nil {
		t.Fatal(err)
	}

	keys := []string{
		"", "../x", "/abs", "a/../../b", "..", ".", "a/./b", "a//b", "a/", "/",
		`a\b`, "x\x00y", "a b", "a:b", "é", "a\nb", ".meta/x", ".lock/00",
		"a/.tmp-123", ".hidden", "x/..", strings.Repeat("a", MaxKeyLen+1),
		strings.Repeat("a", maxSegmentLen+1),
		"evil/secret", "evil/new", "rel/new", "meta-evil/x",
	}
	ctx := context.Background()
	later := c.now().Add(time.Hour)
	for _, k := range keys {
		if err := s.Put(ctx, k, []byte("pwned"), later); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q): %v, want ErrInvalidKey", k, err)
		}
		if k == "meta-evil/x" {
			continue // the key itself is valid; only its metadata path is hostile
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Get(%q): %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", k, err)
		}
		if err := s.Extend(ctx, k, later); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Extend(%q): %v, want ErrInvalidKey", k, err)
		}
		if err := s.SetLegalHold(ctx, k, true); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("SetLegalHold(%q): %v, want ErrInvalidKey", k, err)
		}
	}
	if got := files(t, outside); !slices.Equal(got, []string{"secret"}) {
		t.Fatalf("files outside root: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "outside" {
		t.Fatalf("outside file changed: %q", b)
	}
	if got := tempFiles(t, dir); len(got) != 0 {
		t.Fatalf("temp files left: %v", got)
	}
	// Boundary: the longest key is fine.
	seg := strings.Repeat("b", 200)
	long := seg + "/" + seg + "/" + strings.Repeat("c", MaxKeyLen-2*len(seg)-2)
	if err := s.Put(ctx, long, []byte("ok"), later); err != nil {
		t.Fatalf("Put(%d-byte key): %v", len(long), err)
	}
}

func TestKeyConflictsWithDirectory(t *testing.T) {
	c := newClock()
	s := open(t, t.TempDir(), c)
	ctx := context.Background()
	if err := s.Put(ctx, "a/b", []byte("1"), c.now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", []byte("2"), c.now()); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Put over a directory: %v, want ErrInvalidKey", err)
	}
	if err := s.Put(ctx, "a/b/c", []byte("3"), c.now()); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Put below an object: %v, want ErrInvalidKey", err)
	}
	if got := read(t, s, "a/b"); string(got) != "1" {
		t.Fatalf("a/b = %q", got)
	}
}

func TestGetRefusesSymlinkObject(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	if err := s.Put(context.Background(), "real", []byte("x"), c.now()); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "alias"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(symlink): %v, want ErrNotFound", err)
	}
}

func TestRetention(t *testing.T) {
	c := newClock()
	s := open(t, t.TempDir(), c)
	ctx := context.Background()
	deadline := c.now().Add(28 * 24 * time.Hour)
	if err := s.Put(ctx, "chunk", []byte("keep me"), deadline); err != nil {
		t.Fatal(err)
	}
	err := s.Delete(ctx, "chunk")
	if !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete before deadline: %v, want ErrRetained", err)
	}
	if !strings.Contains(err.Error(), deadline.UTC().Format(time.RFC3339)) {
		t.Errorf("error %q does not say until when", err)
	}
	if got := read(t, s, "chunk"); string(got) != "keep me" {
		t.Fatalf("object changed: %q", got)
	}

	c.advance(28*24*time.Hour - time.Second)
	if err := s.Delete(ctx, "chunk"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete one second early: %v, want ErrRetained", err)
	}
	c.advance(time.Second) // exactly the deadline: due
	if err := s.Delete(ctx, "chunk"); err != nil {
		t.Fatalf("Delete at deadline: %v", err)
	}
	if _, err := s.Get(ctx, "chunk"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "chunk"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if err := s.Walk(func(k string) error { return fmt.Errorf("unexpected key %q", k) }); err != nil {
		t.Fatal(err)
	}
}

func TestLegalHold(t *testing.T) {
	c := newClock()
	s := open(t, t.TempDir(), c)
	ctx := context.Background()
	if err := s.Put(ctx, "k", []byte("evidence"), c.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLegalHold(ctx, "k", true); err != nil {
		t.Fatal(err)
	}
	c.advance(2 * time.Hour)
	err := s.Delete(ctx, "k")
	if !errors.Is(err, storage.ErrRetained) || !strings.Contains(err.Error(), "legal hold") {
		t.Fatalf("Delete under hold after deadline: %v, want ErrRetained (legal hold)", err)
	}
	if _, held, _ := s.RetainUntil("k"); !held {
		t.Fatal("RetainUntil reports no hold")
	}
	if err := s.SetLegalHold(ctx, "k", false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete after release: %v", err)
	}
	if err := s.SetLegalHold(ctx, "k", true); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetLegalHold on missing: %v, want ErrNotFound", err)
	}
}

func TestExtend(t *testing.T) {
	c := newClock()
	s := open(t, t.TempDir(), c)
	ctx := context.Background()
	d0 := c.now().Add(time.Hour)
	if err := s.Put(ctx, "k", []byte("x"), d0); err != nil {
		t.Fatal(err)
	}
	d1 := d0.Add(24 * time.Hour)
	if err := s.Extend(ctx, "k", d1); err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(ctx, "k", d0); err != nil {
		t.Fatalf("Extend earlier: %v, want nil (ignored)", err)
	}
	until, held, err := s.RetainUntil("k")
	if err != nil {
		t.Fatal(err)
	}
	if !until.Equal(d1) || held {
		t.Fatalf("RetainUntil = %v, %v; want %v, false", until, held, d1)
	}
	c.advance(2 * time.Hour) // past the first deadline, before the extended one
	if err := s.Delete(ctx, "k"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete after old deadline: %v, want ErrRetained", err)
	}
	if err := s.Extend(ctx, "nope", d1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Extend missing: %v, want ErrNotFound", err)
	}
	if _, _, err := s.RetainUntil("nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RetainUntil missing: %v, want ErrNotFound", err)
	}
}

func TestContextCanceled(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "k", []byte("x"), c.now()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put: %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("canceled Put stored something: %v", err)
	}
}

func TestMetadataSurvivesReopen(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	ctx := context.Background()
	deadline := c.now().Add(28 * 24 * time.Hour).Add(123456789 * time.Nanosecond)
	if err := s.Put(ctx, "a/held", []byte("1"), deadline); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLegalHold(ctx, "a/held", true); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a/plain", []byte("2"), deadline); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, dir, c)
	until, held, err := s2.RetainUntil("a/held")
	if err != nil {
		t.Fatal(err)
	}
	if !until.Equal(deadline) || !held {
		t.Fatalf("after reopen: %v, %v; want %v, true", until, held, deadline)
	}
	c.advance(29 * 24 * time.Hour)
	if err := s2.Delete(ctx, "a/held"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete held after reopen: %v, want ErrRetained", err)
	}
	if err := s2.Delete(ctx, "a/plain"); err != nil {
		t.Fatalf("Delete due after reopen: %v", err)
	}
}

func TestCrashLeftovers(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := openSidecar(t, dir, c)
	ctx := context.Background()
	for _, k := range []string{"x/1", "x/2", "x/3"} {
		if err := s.Put(ctx, k, []byte(k), c.now()); err != nil {
			t.Fatal(err)
		}
	}

	// A Delete that crashed between removing the object and its metadata.
	if err := os.Remove(filepath.Join(dir, "x", "1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "x", "2")); err != nil {
		t.Fatal(err)
	}
	// A later Delete finishes the job...
	if err := s.Delete(ctx, "x/1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete of half-deleted: %v, want ErrNotFound", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, metaDir, "x", "1"+metaSuffix)); !os.IsNotExist(err) {
		t.Fatalf("orphan metadata of x/1 still there: %v", err)
	}
	// ...and so does the sweeper's call.
	n, err := s.RemoveOrphanMeta()
	if err != nil || n != 1 {
		t.Fatalf("RemoveOrphanMeta = %d, %v; want 1, nil", n, err)
	}
	if _, _, err := s.RetainUntil("x/3"); err != nil {
		t.Fatalf("metadata of a live object removed: %v", err)
	}
	// An orphan must not stop the key from being stored again.
	if err := s.Put(ctx, "x/2", []byte("again"), c.now()); err != nil {
		t.Fatal(err)
	}

	// An object whose metadata vanished is kept, not deleted.
	if err := os.Remove(filepath.Join(dir, metaDir, "x", "3"+metaSuffix)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "x/3"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete without metadata: %v, want ErrRetained", err)
	}
	// Corrupt metadata: refuse, never panic or delete.
	mp := filepath.Join(dir, metaDir, "x", "2"+metaSuffix)
	os.Chmod(mp, 0o600)
	if err := os.WriteFile(mp, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "x/2"); err == nil {
		t.Fatal("Delete with corrupt metadata succeeded")
	}
	if got := read(t, s, "x/2"); string(got) != "again" {
		t.Fatalf("x/2 = %q", got)
	}
}

func TestRemoveStaleTemp(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := openSidecar(t, dir, c)
	ctx := context.Background()
	if err := s.Put(ctx, "cam/a", []byte("a"), c.now()); err != nil {
		t.Fatal(err)
	}
	// What a crash mid-Put leaves: a temp object and a temp metadata file.
	stale := []string{
		filepath.Join(dir, "cam", tempPrefix+"deadbeef"),
		filepath.Join(dir, metaDir, "cam", tempPrefix+"cafe"),
	}
	for _, p := range stale {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.RemoveStaleTemp()
	if err != nil || n != 0 {
		t.Fatalf("fresh temp files: removed %d, %v; want 0 (may be a Put in flight)", n, err)
	}
	c.advance(StaleTempAge + time.Minute)
	n, err = s.RemoveStaleTemp()
	if err != nil || n != len(stale) {
		t.Fatalf("RemoveStaleTemp = %d, %v; want %d", n, err, len(stale))
	}
	if got := tempFiles(t, dir); len(got) != 0 {
		t.Fatalf("temp files left: %v", got)
	}
	if got := read(t, s, "cam/a"); string(got) != "a" {
		t.Fatalf("object damaged: %q", got)
	}
	if _, _, err := s.RetainUntil("cam/a"); err != nil {
		t.Fatal(err)
	}
}

func TestWalk(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	ctx := context.Background()
	want := []string{"a", "b/c", "b/d/e", "z.json"}
	for _, k := range want {
		if err := s.Put(ctx, k, []byte(k), c.now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "b", tempPrefix+"x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.Walk(func(k string) error { got = append(got, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Walk = %v, want %v", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Walk(func(string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Walk with failing fn: %v after %d calls; want stop after 1", err, calls)
	}
}

func BenchmarkPut1MB(b *testing.B) {
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	run := func(b *testing.B, parallel bool) {
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		deadline := time.Now().Add(time.Hour)
		var seq atomic.Int64
		put := func() {
			if err := s.Put(ctx, fmt.Sprintf("bench/%09d", seq.Add(1)), data, deadline); err != nil {
				b.Error(err)
			}
		}
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		if !parallel {
			for b.Loop() {
				put()
			}
			return
		}
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				put()
			}
		})
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
	// The machine's raw cost of the same durable write, to read the two
	// above as a ratio: create, write, fsync, rename, fsync the directory.
	b.Run("raw", func(b *testing.B) {
		dir := b.TempDir()
		d, err := os.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		b.SetBytes(int64(len(data)))
		n := 0
		for b.Loop() {
			n++
			tmp := filepath.Join(dir, fmt.Sprintf(".tmp-%d", n))
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			if err := os.Rename(tmp, filepath.Join(dir, fmt.Sprint(n))); err != nil {
				b.Fatal(err)
			}
			if err := d.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDeadlineOnObject: on a file system with user extended attributes
// and O_TMPFILE, Put writes the object unnamed with its deadline on it and
// links it into place (no sidecar, no temporary name: two fsyncs, as for
// any durable file write); a change (extension, hold)
// goes to a sidecar that then rules; a stale sidecar from a crashed Put
// never outranks a new object's own deadline; an object that lost its
// attribute is kept.
func TestDeadlineOnObject(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	s := open(t, dir, c)
	if !s.xattr {
		testenv.Missing(t, "user extended attributes on "+dir)
	}
	ctx := context.Background()
	until := c.now().Add(time.Hour).Truncate(time.Second)
	sidecar := func(k string) string { return filepath.Join(dir, metaDir, filepath.FromSlash(k)+metaSuffix) }
	if err := s.Put(ctx, "inc/a", []byte("a"), until); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sidecar("inc/a")); !os.IsNotExist(err) {
		t.Fatalf("Put wrote a sidecar: %v", err)
	}
	// Written unnamed and linked into place: no temporary name ever.
	if !s.unnamed {
		testenv.Missing(t, "O_TMPFILE on "+dir)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, "inc")); err != nil || len(ents) != 1 || ents[0].Name() != "a" {
		t.Fatalf("directory after Put: %v %v, want the object alone", ents, err)
	}
	if got, held, err := s.RetainUntil("inc/a"); err != nil || !got.Equal(until) || held {
		t.Fatalf("RetainUntil = %v %v %v, want %v", got, held, err, until)
	}
	if err := s.Delete(ctx, "inc/a"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete before the deadline: %v", err)
	}
	later := until.Add(time.Hour)
	if err := s.Extend(ctx, "inc/a", later); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLegalHold(ctx, "inc/a", true); err != nil {
		t.Fatal(err)
	}
	if got, held, err := s.RetainUntil("inc/a"); err != nil || !got.Equal(later) || !held {
		t.Fatalf("after extend and hold: %v %v %v", got, held, err)
	}
	if _, err := os.Lstat(sidecar("inc/a")); err != nil {
		t.Fatalf("the change left no sidecar: %v", err)
	}
	// Reopened, the sidecar still rules over the attribute.
	s = open(t, dir, c)
	if _, held, err := s.RetainUntil("inc/a"); err != nil || !held {
		t.Fatalf("after reopening: held %v, %v", held, err)
	}

	// A crashed sidecar-mode Put left a sidecar with a far deadline and no
	// object; the new object's own deadline wins.
	if err := os.MkdirAll(filepath.Dir(sidecar("inc/b")), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sidecar("inc/b"), []byte(`{"retain_until":"2099-01-01T00:00:00Z","legal_hold":true}`), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "inc/b", []byte("b"), until); err != nil {
		t.Fatal(err)
	}
	if got, held, err := s.RetainUntil("inc/b"); err != nil || !got.Equal(until) || held {
		t.Fatalf("stale sidecar outranked the object: %v %v %v", got, held, err)
	}
	c.advance(2 * time.Hour)
	if err := s.Delete(ctx, "inc/b"); err != nil {
		t.Fatalf("Delete after the deadline: %v", err)
	}

	// An object stripped of its attribute is kept, never deleted.
	if err := s.Put(ctx, "inc/c", []byte("c"), c.now()); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Minute)
	if err := unix.Removexattr(filepath.Join(dir, "inc", "c"), metaXattr); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "inc/c"); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("Delete without metadata: %v, want ErrRetained", err)
	}
}

// TestConformance runs the suite every chunk store passes, on a moved
// clock: with deadlines on the objects (extended attributes) and with
// every deadline in a sidecar, as on a file system without them.
func TestConformance(t *testing.T) {
	for _, sidecar := range []bool{false, true} {
		t.Run(map[bool]string{false: "xattr", true: "sidecar"}[sidecar], func(t *testing.T) {
			c := &clock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
			now := func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
			storagetest.Run(t, storagetest.Harness{
				New: func(t *testing.T) storage.ChunkStore {
					s, err := Open(t.TempDir(), WithClock(now))
					if err != nil {
						t.Fatal(err)
					}
					if sidecar {
						s.xattr, s.unnamed = false, false
					}
					t.Cleanup(func() { s.Close() })
					return s
				},
				Now:   now,
				Short: 28 * 24 * time.Hour,
				Pass: func(_ *testing.T, until time.Time) {
					c.mu.Lock()
					c.t = until.Add(time.Second)
					c.mu.Unlock()
				},
			})
		})
	}
}
