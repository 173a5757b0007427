// Package diskspace watches the free space of the file systems a node
// writes to and keeps a reserve for the catalog. A full disk must cost
// footage, never the record of its loss: the catalog needs a little room
// to write the gap records and session ends that say what was lost, and
// nothing guarantees that room on a disk that chunks, logs or anything
// else can fill. So the Monitor holds a reserve file, preallocated, and
// releases it the moment the disk is out of space; from then until space
// returns, Writable tells the chunk writers to leave the room to the
// catalog. Below a threshold (MinFree) it reports the node not accepting
// new incidents (Accepting), which the node turns into refusals, an alert
// and an unhealthy /healthz. Space coming back re-creates the reserve and
// ends both, with nothing restarted.
package diskspace

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrFull is what Accepting and Writable wrap while the disk is below its
// threshold or out of space.
var ErrFull = errors.New("storage full")

// Threshold is an amount of free space: a number of bytes, or a percentage
// of the file system's size.
type Threshold struct {
	Bytes   uint64
	Percent float64 // used when Bytes is zero
}

// ParseThreshold reads "512MiB", "2GB", "1048576" or "5%".
func ParseThreshold(s string) (Threshold, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v > 100 {
			return Threshold{}, fmt.Errorf("free-space threshold %q: a percentage is between 0%% and 100%%", s)
		}
		return Threshold{Percent: v}, nil
	}
	n, err := ParseBytes(s)
	if err != nil {
		return Threshold{}, fmt.Errorf("free-space threshold %q: %w", s, err)
	}
	return Threshold{Bytes: n}, nil
}

// ParseBytes reads a size with an optional unit: B, KB, MB, GB, TB (powers
// of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
func ParseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 2GB, 1048576)", s)
	}
	return uint64(v * mult), nil
}

// Of is the threshold in bytes on a file system of total bytes.
func (t Threshold) Of(total uint64) uint64 {
	if t.Bytes > 0 || t.Percent == 0 {
		return t.Bytes
	}
	return uint64(float64(total) * t.Percent / 100)
}

func (t Threshold) String() string {
	if t.Bytes == 0 && t.Percent > 0 {
		return strconv.FormatFloat(t.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatUint(t.Bytes, 10) + " bytes"
}

// Config of a Monitor.
type Config struct {
	// Paths are the directories whose file systems are watched: the data
	// directory (the catalog) first, then the chunk store's root when it
	// is local. One file system listed twice counts once.
	Paths []string
	// MinFree is the free space below which the node takes no new
	// incidents.
	MinFree Threshold
	// Reserve is the reserve file's path, on Paths[0]'s file system;
	// empty: no reserve.
	Reserve string
	// ReserveSize is how much the reserve holds. It is released when the
	// free space falls below it (or a write finds the disk full), so the
	// catalog has at least this much to record the loss with.
	ReserveSize int64
	// OnChange, when set, hears of every change of state, on the goroutine
	// that saw it (Run's, or the caller of Exhausted), one call at a time,
	// after the reserve is released: it may write to the catalog.
	OnChange func(State)
	Log      *slog.Logger
	// statfs is the file-system query; nil: unix.Statfs (tests replace it).
	statfs func(path string, st *unix.Statfs_t) error
}

// State is what the Monitor last saw.
type State struct {
	// Low: a watched file system has less free space than MinFree.
	Low bool
	// Released: the reserve is released (the disk ran out of space) and
	// not yet re-created: chunk writes should leave the space to the
	// catalog.
	Released bool
	// Path is the fullest watched file system's directory, Free its free
	// space (for an unprivileged user) and Want its MinFree, in bytes.
	Path       string
	Free, Want uint64
	Total      uint64
}

// Monitor watches free space and keeps the reserve. Its methods are safe
// for concurrent use.
type Monitor struct {
	cfg Config

	mu    sync.Mutex
	state State
	// notify serialises OnChange: the checks and the write paths that
	// report a full disk run on goroutines of their own.
	notify sync.Mutex
}

// New creates (or keeps) the reserve file and takes a first reading. A
// disk already without room for the reserve starts with it released.
func New(cfg Config) (*Monitor, error) {
	if len(cfg.Paths) == 0 {
		return nil, errors.New("diskspace: no path to watch")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.statfs == nil {
		cfg.statfs = unix.Statfs
	}
	m := &Monitor{cfg: cfg}
	if cfg.Reserve != "" && cfg.ReserveSize > 0 {
		if err := m.createReserve(); err != nil {
			if !IsNoSpace(err) {
				return nil, err
			}
			m.state.Released = true
			cfg.Log.Warn("no room for the catalog's disk reserve: starting with it released", "path", cfg.Reserve, "err", err)
		}
	}
	if _, err := m.Check(); err != nil {
		return nil, err
	}
	return m, nil
}

// IsNoSpace reports whether err is a file system out of space or quota.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Run checks every interval until done is closed.
func (m *Monitor) Run(done <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if _, err := m.Check(); err != nil {
				m.cfg.Log.Error("free-space check", "err", err)
			}
		}
	}
}

// State returns what the last check saw.
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Check reads the file systems' free space now and acts on it: below the
// reserve's size the reserve is released; back above MinFree plus the
// reserve, it is re-created and the node accepts incidents again.
func (m *Monitor) Check() (State, error) {
	m.mu.Lock()
	st, err := m.read()
	if err != nil {
		m.mu.Unlock()
		return m.state, err
	}
	st.Released = m.state.Released
	if !st.Released && m.cfg.ReserveSize > 0 && st.Free < uint64(m.cfg.ReserveSize) {
		st = m.release(st, "free space below the reserve")
	}
	// Re-created only where it leaves both MinFree and more than itself
	// free, or the next check would release it again.
	if r := uint64(max(m.cfg.ReserveSize, 0)); st.Released && st.Free >= max(st.Want, r)+r {
		if err := m.createReserve(); err != nil {
			m.cfg.Log.Warn("catalog disk reserve not re-created yet", "path", m.cfg.Reserve, "err", err)
		} else {
			st.Released = false
			if st, err = m.read(); err != nil {
				m.mu.Unlock()
				return m.state, err
			}
		}
	}
	if st.Released {
		// Until the reserve is back, the node stays as it was when the
		// disk filled: the reserve's own space does not count as free.
		st.Low = true
	}
	return m.set(st), nil
}

// Exhausted is told of a write that failed (a chunk put, a catalog
// commit) and releases the reserve at once if the disk is out of space or
// below MinFree, without waiting for the next check. It reports whether
// the write is worth trying again: the reserve was just released, or was
// already and the disk is low.
func (m *Monitor) Exhausted(cause error) bool {
	m.mu.Lock()
	st, err := m.read()
	if err != nil {
		m.mu.Unlock()
		return false
	}
	st.Released = m.state.Released
	if !st.Low && !IsNoSpace(cause) {
		m.set(st)
		return false
	}
	if !st.Released {
		st = m.release(st, cause.Error())
	}
	st.Low = true
	m.set(st)
	return true
}

// set records st and, after unlocking, tells OnChange when it differs
// from the state before. It is called with m.mu held and returns st.
func (m *Monitor) set(st State) State {
	old := m.state
	m.state = st
	m.mu.Unlock()
	if (old.Low != st.Low || old.Released != st.Released) && m.cfg.OnChange != nil {
		m.notify.Lock()
		defer m.notify.Unlock()
		m.cfg.OnChange(m.State()) // the latest, should another change have come meanwhile
	}
	return st
}

// release removes the reserve file; called with m.mu held. st is the
// state as read before, returned as it is after.
func (m *Monitor) release(st State, why string) State {
	if m.cfg.Reserve != "" {
		if err := os.Remove(m.cfg.Reserve); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.cfg.Log.Error("catalog disk reserve not released", "path", m.cfg.Reserve, "err", err)
			return st
		}
	}
	m.cfg.Log.Warn("disk full: catalog reserve released, chunk writes stopped until space returns",
		"path", st.Path, "free", st.Free, "reserve", m.cfg.ReserveSize, "cause", why)
	st.Released = true
	if after, err := m.read(); err == nil {
		after.Released = true
		return after
	}
	return st
}

// createReserve makes the reserve file ReserveSize long, its blocks
// allocated, so that the space is the catalog's whatever else fills the
// disk.
func (m *Monitor) createReserve() error {
	if m.cfg.Reserve == "" || m.cfg.ReserveSize <= 0 {
		return nil
	}
	f, err := os.OpenFile(m.cfg.Reserve, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("disk reserve %s: %w", m.cfg.Reserve, err)
	}
	// A reserve left by a run with a larger size gives the difference back.
	err = f.Truncate(m.cfg.ReserveSize)
	if err == nil {
		err = allocate(f, m.cfg.ReserveSize)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(m.cfg.Reserve) // a half-allocated reserve promises what it does not hold
		return fmt.Errorf("disk reserve %s: %w", m.cfg.Reserve, err)
	}
	return nil
}

// allocate gives f size bytes of real blocks: fallocate where the file
// system has it, else zeros written (a sparse file would reserve nothing).
func allocate(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// read queries every watched file system; the state is the fullest's
// (the one with the least free space compared to its threshold).
func (m *Monitor) read() (State, error) {
	var out State
	seen := map[unix.Fsid]bool{}
	first := true
	for _, p := range m.cfg.Paths {
		var sf unix.Statfs_t
		if err := m.cfg.statfs(p, &sf); err != nil {
			return out, fmt.Errorf("free space of %s: %w", p, err)
		}
		if seen[sf.Fsid] {
			continue
		}
		seen[sf.Fsid] = true
		bs := uint64(sf.Bsize)
		total, free := sf.Blocks*bs, sf.Bavail*bs
		want := m.cfg.MinFree.Of(total)
		low := free < want
		// The fullest: low before not low, then the least headroom.
		if first || (low && !out.Low) || (low == out.Low && int64(free)-int64(want) < int64(out.Free)-int64(out.Want)) {
			out = State{Low: low, Path: p, Free: free, Want: want, Total: total}
			first = false
		}
	}
	return out, nil
}

// Accepting is nil while the node may take new incidents; otherwise why
// not, wrapping ErrFull.
func (m *Monitor) Accepting() error {
	st := m.State()
	if !st.Low {
		return nil
	}
	return fmt.Errorf("%w: not accepting new incidents (%s free on %s, minimum %s)", ErrFull, size(st.Free), st.Path, size(st.Want))
}

// Writable is nil unless the reserve is released: chunk writes to the
// file system it is on would then take the room kept for the catalog.
func (m *Monitor) Writable() error {
	if !m.State().Released {
		return nil
	}
	return fmt.Errorf("%w: disk out of space, the room left is kept for the catalog's records", ErrFull)
}

// size is n bytes for a person: 12.3 MiB.
func size(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for v := n / unit; v >= unit && exp < 4; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
