package diskspace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// disk is a file system whose free space the test sets; the reserve file,
// a real file in a temporary directory, takes its size from it while it
// exists, as it would on the disk it is on.
type disk struct {
	mu      sync.Mutex
	total   uint64
	used    uint64 // besides the reserve
	reserve string
	id      int32
}

func (d *disk) statfs(_ string, st *unix.Statfs_t) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	used := d.used
	if fi, err := os.Stat(d.reserve); err == nil {
		used += uint64(fi.Size())
	}
	free := uint64(0)
	if used < d.total {
		free = d.total - used
	}
	*st = unix.Statfs_t{Bsize: 4096, Blocks: d.total / 4096, Bavail: free / 4096, Fsid: unix.Fsid{Val: [2]int32{d.id, 0}}}
	return nil
}

func (d *disk) setFree(free uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.used = d.total - free
}

type changes struct {
	mu  sync.Mutex
	got []State
}

func (c *changes) add(st State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, st)
}

func (c *changes) list() []State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]State(nil), c.got...)
}

// newMonitor watches a 100 MiB disk with 10 MiB MinFree and a 4 MiB
// reserve, with free bytes free besides the reserve.
func newMonitor(t *testing.T, free uint64) (*Monitor, *disk, *changes) {
	t.Helper()
	dir := t.TempDir()
	d := &disk{total: 100 * mib, reserve: filepath.Join(dir, "reserve"), id: 1}
	d.setFree(free)
	ch := &changes{}
	m, err := New(Config{Paths: []string{dir}, MinFree: Threshold{Bytes: 10 * mib}, Reserve: d.reserve, ReserveSize: 4 * mib,
		OnChange: ch.add, statfs: d.statfs})
	if err != nil {
		t.Fatal(err)
	}
	return m, d, ch
}

func reserveHeld(t *testing.T, path string, size int64) bool {
	t.Helper()
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size || fi.Mode().Perm() != 0o600 {
		t.Fatalf("reserve is %d bytes, mode %v; want %d, 0600", fi.Size(), fi.Mode().Perm(), size)
	}
	// Allocated, not sparse: the blocks are the catalog's.
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks * 512; blocks < size {
		t.Fatalf("reserve has %d bytes of blocks, want %d (a sparse file reserves nothing)", blocks, size)
	}
	return true
}

func TestReserveReleasedWhenDiskFillsAndRecreatedWhenSpaceReturns(t *testing.T) {
	m, d, ch := newMonitor(t, 60*mib)
	if !reserveHeld(t, d.reserve, 4*mib) {
		t.Fatal("no reserve after New")
	}
	if err := m.Accepting(); err != nil {
		t.Fatalf("accepting with 56 MiB free: %v", err)
	}

	d.setFree(4*mib + 512*1024) // the reserve leaves 512 KiB
	st, err := m.Check()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Released || !st.Low || reserveHeld(t, d.reserve, 4*mib) {
		t.Fatalf("disk full: state %+v, reserve held %v; want it released", st, reserveHeld(t, d.reserve, 4*mib))
	}
	if st.Free < 4*mib {
		t.Errorf("free after the release %d, want the reserve's 4 MiB at least", st.Free)
	}
	if err := m.Writable(); !errors.Is(err, ErrFull) {
		t.Errorf("Writable with the reserve released: %v, want ErrFull", err)
	}
	if err := m.Accepting(); !errors.Is(err, ErrFull) {
		t.Errorf("Accepting with the reserve released: %v, want ErrFull", err)
	}
	m.Check() // no change: no second notice
	if got := ch.list(); len(got) != 1 || !got[0].Released {
		t.Fatalf("changes %+v, want one, released", got)
	}

	// Space back, but not enough for MinFree beside the reserve: still full.
	d.setFree(12 * mib)
	if st, _ := m.Check(); !st.Released || reserveHeld(t, d.reserve, 4*mib) {
		t.Fatalf("12 MiB free: %+v, want the reserve still released (10 MiB minimum + 4 MiB reserve)", st)
	}
	d.setFree(30 * mib)
	st, _ = m.Check()
	if st.Released || st.Low || !reserveHeld(t, d.reserve, 4*mib) {
		t.Fatalf("30 MiB free: %+v; want the reserve back and the node accepting", st)
	}
	if m.Writable() != nil || m.Accepting() != nil {
		t.Errorf("after recovery: writable %v, accepting %v", m.Writable(), m.Accepting())
	}
	if got := ch.list(); len(got) != 2 || got[1].Low || got[1].Released {
		t.Fatalf("changes %+v, want a second one: recovered", got)
	}
}

func TestBelowMinFreeRefusesButKeepsWriting(t *testing.T) {
	m, d, ch := newMonitor(t, 60*mib)
	d.setFree(12 * mib) // 8 MiB beside the reserve: below 10 MiB, above 4 MiB
	st, _ := m.Check()
	if !st.Low || st.Released || !reserveHeld(t, d.reserve, 4*mib) {
		t.Fatalf("state %+v: want low with the reserve held", st)
	}
	err := m.Accepting()
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Accepting: %v, want ErrFull", err)
	}
	want := "storage full: not accepting new incidents (8.0 MiB free on "
	if got := err.Error(); len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("Accepting says %q, want it to start %q", got, want)
	}
	if err := m.Writable(); err != nil {
		t.Errorf("Writable below MinFree: %v; live sessions keep recording as long as there is room", err)
	}
	if got := ch.list(); len(got) != 1 || !got[0].Low {
		t.Errorf("changes %+v, want one: low", got)
	}
}

func TestExhaustedReleasesAtOnce(t *testing.T) {
	m, d, _ := newMonitor(t, 60*mib)
	// A catalog failure for another reason, on a disk with room: nothing to do.
	if m.Exhausted(errors.New("constraint failed")) {
		t.Fatal("Exhausted with room to spare asked for a retry")
	}
	if !reserveHeld(t, d.reserve, 4*mib) {
		t.Fatal("reserve released for an error that is not about space")
	}
	// A put that found no space, before the next check: released now.
	if !m.Exhausted(fmt.Errorf("put x: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC})) {
		t.Fatal("Exhausted(ENOSPC) did not ask for a retry")
	}
	if reserveHeld(t, d.reserve, 4*mib) || m.Writable() == nil {
		t.Fatal("ENOSPC did not release the reserve")
	}
	// A catalog that fails once the disk is low is worth another try.
	d.setFree(0)
	if !m.Exhausted(errors.New("database or disk is full")) {
		t.Error("Exhausted on a low disk with the reserve released did not ask for a retry")
	}
}

func TestStartsReleasedOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	d := &disk{total: 100 * mib, reserve: filepath.Join(dir, "reserve"), id: 1}
	d.setFree(0)
	// The real reserve file would fail to allocate on a full disk; here
	// the disk is simulated, so release at the first check is what shows.
	m, err := New(Config{Paths: []string{dir}, MinFree: Threshold{Bytes: 10 * mib}, Reserve: d.reserve, ReserveSize: 4 * mib, statfs: d.statfs})
	if err != nil {
		t.Fatal(err)
	}
	if st := m.State(); !st.Released || !st.Low {
		t.Fatalf("state on a full disk %+v, want released and low", st)
	}
}

func TestFullestFileSystemCounts(t *testing.T) {
	data := &disk{total: 100 * mib, reserve: filepath.Join(t.TempDir(), "none"), id: 1}
	data.setFree(50 * mib)
	chunks := &disk{total: 1000 * mib, reserve: data.reserve, id: 2}
	chunks.setFree(20 * mib) // 2% of 1000 MiB, below 5%
	statfs := func(p string, st *unix.Statfs_t) error {
		if p == "chunks" {
			return chunks.statfs(p, st)
		}
		return data.statfs(p, st)
	}
	m, err := New(Config{Paths: []string{"data", "chunks", "data"}, MinFree: Threshold{Percent: 5}, statfs: statfs})
	if err != nil {
		t.Fatal(err)
	}
	st := m.State()
	if !st.Low || st.Path != "chunks" || st.Want != 50*mib {
		t.Fatalf("state %+v: want the chunk store's disk low (20 MiB free, 50 MiB wanted)", st)
	}
}

func TestParseThreshold(t *testing.T) {
	for in, want := range map[string]Threshold{
		"5%": {Percent: 5}, "512MiB": {Bytes: 512 * mib}, "2GB": {Bytes: 2e9}, "1048576": {Bytes: mib}, " 1.5 GiB ": {Bytes: 1536 * mib},
	} {
		got, err := ParseThreshold(in)
		if err != nil || got != want {
			t.Errorf("ParseThreshold(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "150%", "-1MiB", "5 parsecs"} {
		if _, err := ParseThreshold(in); err == nil {
			t.Errorf("ParseThreshold(%q) accepted", in)
		}
	}
	if got := (Threshold{Percent: 5}).Of(200 * mib); got != 10*mib {
		t.Errorf("5%% of 200 MiB = %d", got)
	}
}
