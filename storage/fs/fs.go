// Package fs is a storage.ChunkStore on a local directory.
//
// Layout under the root directory:
//
//	<key>                  the object, mode 0400, never overwritten; its
//	                       retention metadata as written by Put in the
//	                       extended attribute user.camvault.meta
//	.meta/<key>.json       its retention metadata once changed (an
//	                       extension, a hold), which then takes precedence;
//	                       from Put too where the file system has no user
//	                       extended attributes
//	.lock/NN               lock stripes (flock) serialising writers of a key
//	<dir>/.tmp-*           files being written (sidecars; objects too where
//	                       the file system has no O_TMPFILE, else objects
//	                       are written unnamed and linked into place);
//	                       removed by RemoveStaleTemp
//
// Keys may not have a segment that starts with ".", so no key can reach the
// metadata, the locks or a temporary file.
//
// Crash safety: every file is written to a temporary name, fsynced, then
// moved into place and its directory fsynced. An object's metadata is made
// durable before the object becomes visible, so an object never exists
// without its deadline: the attribute is set on the temporary file before
// the one fsync that makes data and attribute durable together (two
// fsyncs a Put, as for any durable file write), or the sidecar is written
// and synced first. Delete removes the object before its sidecar, so a
// crash can leave only a sidecar without an object, which RemoveOrphanMeta
// (or a later Delete) cleans. Metadata is read-modify-written under a
// per-key flock, so several processes (the server and a CLI sweeper) may
// share one root without losing a hold or an extension.
package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"camvault/storage"
)

const (
	// MaxKeyLen is the longest key accepted, in bytes.
	MaxKeyLen = 512
	// maxSegmentLen leaves room under NAME_MAX (255) for the ".json" suffix.
	maxSegmentLen = 240

	// StaleTempAge is how old a temporary file must be before
	// RemoveStaleTemp deletes it, so that a Put in flight in this or another
	// process is never robbed of its file.
	StaleTempAge = time.Hour

	metaDir     = ".meta"
	metaSuffix  = ".json"
	lockDir     = ".lock"
	tempPrefix  = ".tmp-"
	lockStripes = 64

	dirPerm    = 0o700
	objectPerm = 0o400

	// metaXattr holds an object's retention metadata as Put wrote it.
	metaXattr = "user.camvault.meta"
)

var _ storage.ChunkStore = (*Store)(nil)

// errNoMeta marks an object whose metadata file is missing, which only
// tampering (or a Put racing a Delete of the same key) can cause.
var errNoMeta = errors.New("retention metadata missing")

// Store is a ChunkStore rooted at a directory. It is safe for concurrent use
// by multiple goroutines and by multiple processes sharing the directory.
type Store struct {
	root *os.Root
	now  func() time.Time
	// dirs remembers directories this Store created or checked, so a Put
	// into an incident's directory does not walk and stat every component
	// again (through os.Root each component is its own openat). The store
	// never removes directories, so an entry stays true.
	dirs sync.Map // string -> struct{}
	// xattr: the file system keeps user extended attributes, so Put
	// writes the deadline onto the object itself rather than a sidecar.
	xattr bool
	// unnamed: Put writes the object as an unnamed file (O_TMPFILE) and
	// links it into place, with no temporary name to create and remove,
	// and nothing to clean up after a crash.
	unnamed bool
	// ops are the calls that write and sync an object's file and its
	// directory; WithFileOps replaces them to inject faults.
	ops FileOps
}

// FileOps are the system calls through which Put makes an object's bytes
// durable: Write writes the data to the new file, Sync fsyncs it, and the
// directory once the object is linked into it. Tests replace them
// (WithFileOps) to make a write fail midway or an fsync fail, the faults a
// failing disk shows; a nil field keeps the real call.
type FileOps struct {
	Write func(f *os.File, p []byte) (int, error)
	Sync  func(f *os.File) error
}

// WithFileOps makes Put write and sync through ops.
func WithFileOps(ops FileOps) Option {
	return func(s *Store) {
		if ops.Write != nil {
			s.ops.Write = ops.Write
		}
		if ops.Sync != nil {
			s.ops.Sync = ops.Sync
		}
	}
}

// Option configures a Store.
type Option func(*Store)

// WithClock makes the Store read the time from now instead of time.Now, so
// tests can move past deadlines.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// meta is the on-disk retention record of one object.
type meta struct {
	RetainUntil time.Time `json:"retain_until"`
	LegalHold   bool      `json:"legal_hold"`
}

// Open opens the store at dir, creating it with mode 0700 if missing.
// The caller must Close it.
func Open(dir string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("fs store: create root: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fs store: open root: %w", err)
	}
	s := &Store{root: root, now: time.Now, ops: FileOps{Write: (*os.File).Write, Sync: (*os.File).Sync}}
	for _, o := range opts {
		o(s)
	}
	for _, d := range []string{metaDir, lockDir} {
		if err := s.mkdirs(d); err != nil {
			root.Close()
			return nil, fmt.Errorf("fs store: %w", err)
		}
	}
	if s.xattr, err = s.probeXattr(); err != nil {
		root.Close()
		return nil, fmt.Errorf("fs store: %w", err)
	}
	s.unnamed = s.probeUnnamed()
	return s, nil
}

// probeUnnamed reports whether an unnamed file can be made under the root
// and linked into place through /proc/self/fd (ext4, xfs, btrfs and tmpfs
// can; a file system without O_TMPFILE, or no /proc, cannot).
func (s *Store) probeUnnamed() bool {
	d, err := s.root.Open(lockDir)
	if err != nil {
		return false
	}
	defer d.Close()
	f, err := openUnnamed(d)
	if err != nil {
		return false
	}
	defer f.Close()
	name := tempPrefix + "unnamed-probe"
	s.root.Remove(lockDir + "/" + name)
	if err := linkUnnamed(f, d, name); err != nil {
		return false
	}
	s.root.Remove(lockDir + "/" + name)
	return true
}

// openUnnamed creates an unnamed file in the directory dir.
func openUnnamed(dir *os.File) (*os.File, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create unnamed file: %w", err)
	}
	return os.NewFile(uintptr(fd), dir.Name()+"/(unnamed)"), nil
}

// linkUnnamed gives the unnamed file f the name name in dir; like link(2)
// it fails with EEXIST rather than replace a name.
func linkUnnamed(f, dir *os.File, name string) error {
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), int(dir.Fd()), name, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: name, Err: err}
	}
	return nil
}

// probeXattr reports whether files under the root keep user extended
// attributes (ext4, xfs, btrfs do; tmpfs before Linux 6.6 does not).
func (s *Store) probeXattr() (bool, error) {
	name := lockDir + "/" + tempPrefix + "xattr-probe"
	f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, err
	}
	defer s.root.Remove(name)
	defer f.Close()
	err = unix.Fsetxattr(int(f.Fd()), metaXattr, []byte("{}"), 0)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPERM):
		return false, nil
	default:
		return false, fmt.Errorf("probe extended attributes: %w", err)
	}
}

// Close releases the root directory. Readers returned by Get stay usable.
func (s *Store) Close() error {
	return s.root.Close()
}

// Put stores data under key with deadline retainUntil. The object is durable
// when Put returns nil. It returns storage.ErrExists if the key is taken.
func (s *Store) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := path.Dir(key)
	if err := s.mkdirs(dir); err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	if !s.xattr {
		if err := s.mkdirs(path.Dir(metaPath(key))); err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
	}
	// Cheap early answer; the authoritative check is under the lock.
	if err := s.checkFree(key); err != nil {
		return err
	}
	mb, err := json.Marshal(meta{RetainUntil: retainUntil.UTC()})
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}

	// The slow part (writing and syncing the data) happens outside the lock
	// so that Puts of different keys sharing a stripe still overlap.
	var attr []byte
	if s.xattr {
		attr = mb
	}
	d, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	defer d.Close()
	var link func() error
	if s.unnamed {
		f, err := openUnnamed(d)
		if err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
		defer f.Close()
		if err := s.writeSynced(f, data, objectPerm, attr); err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
		link = func() error { return linkUnnamed(f, d, path.Base(key)) }
	} else {
		tmp, err := s.writeTemp(dir, data, objectPerm, attr)
		if err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
		// Once linked, the temporary name is only a second link to the object.
		defer s.root.Remove(tmp)
		link = func() error { return s.root.Link(tmp, key) }
	}

	unlock, err := s.lock(key)
	if err != nil {
		return fmt.Errorf("put %q: %w", key, err)
	}
	defer unlock()
	if err := s.checkFree(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Any sidecar already here belongs to no object (a Put that crashed
	// before linking, or a Delete that crashed after unlinking): replace it,
	// or, when the deadline travels on the object, remove it.
	if attr == nil {
		if err := s.writeMeta(key, mb); err != nil {
			return fmt.Errorf("put %q: %w", key, err)
		}
	} else if err := s.removeMeta(key); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("put %q: %w", key, err)
	}
	// Link, unlike rename, fails rather than replace an existing name.
	if err := link(); err != nil {
		if attr == nil {
			s.root.Remove(metaPath(key))
		}
		if errors.Is(err, iofs.ErrExist) {
			return fmt.Errorf("put %q: %w", key, storage.ErrExists)
		}
		return fmt.Errorf("put %q: %w", key, err)
	}
	if err := s.ops.Sync(d); err != nil {
		// The name may not survive a power cut, and a Put that fails must
		// leave nothing a reader could take for stored: unlink it again
		// (still under the key's lock, so it is this Put's own file), and
		// let the caller's retry write it afresh.
		if rerr := s.root.Remove(key); rerr != nil {
			return fmt.Errorf("put %q: sync dir: %w (and the object stays: %v)", key, err, rerr)
		}
		if attr == nil {
			s.root.Remove(metaPath(key))
		}
		return fmt.Errorf("put %q: sync dir: %w", key, err)
	}
	return nil
}

// checkFree reports storage.ErrExists if key names an object, and
// storage.ErrInvalidKey if it names a directory (a prefix of other keys).
func (s *Store) checkFree(key string) error {
	fi, err := s.root.Lstat(key)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("put %q: %w", key, err)
	case fi.IsDir():
		return fmt.Errorf("%w %s: is a prefix of other keys", storage.ErrInvalidKey, quote(key))
	default:
		return fmt.Errorf("put %q: %w", key, storage.ErrExists)
	}
}

// Get opens the object stored under key.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := s.prepare(ctx, key); err != nil {
		return nil, err
	}
	// An object is a regular file, never a link to another one: check the
	// name, then that the file opened is the one checked.
	li, err := s.root.Lstat(key)
	if err == nil && !li.Mode().IsRegular() {
		err = iofs.ErrNotExist
	}
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	f, err := s.root.Open(key)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	if !os.SameFile(li, fi) {
		f.Close()
		return nil, fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
	}
	return f, nil
}

// Delete removes the object and its metadata. It returns storage.ErrRetained
// before the deadline, under legal hold, or when the metadata is missing or
// unreadable (when in doubt, keep).
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.prepare(ctx, key); err != nil {
		return err
	}
	unlock, err := s.lock(key)
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	defer unlock()

	if err := s.requireObject(key); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			// Finish a Delete that crashed between the two removals.
			if rerr := s.removeMeta(key); rerr != nil && !errors.Is(rerr, iofs.ErrNotExist) {
				return fmt.Errorf("delete %q: %w", key, rerr)
			}
		}
		return fmt.Errorf("delete %q: %w", key, err)
	}
	m, err := s.readMeta(key)
	if errors.Is(err, errNoMeta) {
		return fmt.Errorf("delete %q: %w: %w", key, storage.ErrRetained, err)
	}
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if m.LegalHold {
		return fmt.Errorf("delete %q: %w: under legal hold", key, storage.ErrRetained)
	}
	if s.now().Before(m.RetainUntil) {
		return fmt.Errorf("delete %q: %w until %s", key, storage.ErrRetained, m.RetainUntil.Format(time.RFC3339))
	}
	if err := s.root.Remove(key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if err := s.syncDir(path.Dir(key)); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if err := s.removeMeta(key); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("delete %q: object removed, metadata left: %w", key, err)
	}
	return nil
}

// Extend moves the deadline to retainUntil if that is later; an earlier
// time is ignored.
func (s *Store) Extend(ctx context.Context, key string, retainUntil time.Time) error {
	return s.update(ctx, "extend", key, func(m *meta) bool {
		if !retainUntil.After(m.RetainUntil) {
			return false
		}
		m.RetainUntil = retainUntil.UTC()
		return true
	})
}

// SetLegalHold places (on) or releases (!on) a legal hold on the object.
func (s *Store) SetLegalHold(ctx context.Context, key string, on bool) error {
	return s.update(ctx, "legal hold", key, func(m *meta) bool {
		if m.LegalHold == on {
			return false
		}
		m.LegalHold = on
		return true
	})
}

// update applies change to key's metadata under its lock and writes it back
// atomically if change reports a difference.
func (s *Store) update(ctx context.Context, op, key string, change func(*meta) bool) error {
	if err := s.prepare(ctx, key); err != nil {
		return err
	}
	unlock, err := s.lock(key)
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, key, err)
	}
	defer unlock()
	if err := s.requireObject(key); err != nil {
		return fmt.Errorf("%s %q: %w", op, key, err)
	}
	m, err := s.readMeta(key)
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, key, err)
	}
	if !change(&m) {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%s %q: %w", op, key, err)
	}
	if err := s.writeMeta(key, b); err != nil {
		return fmt.Errorf("%s %q: %w", op, key, err)
	}
	return nil
}

// RetainUntil returns the object's deadline and whether it is under legal hold.
func (s *Store) RetainUntil(key string) (time.Time, bool, error) {
	if err := s.prepare(context.Background(), key); err != nil {
		return time.Time{}, false, err
	}
	if err := s.requireObject(key); err != nil {
		return time.Time{}, false, fmt.Errorf("retain until %q: %w", key, err)
	}
	// Metadata is replaced by rename, so an unlocked read sees a whole record.
	m, err := s.readMeta(key)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("retain until %q: %w", key, err)
	}
	return m.RetainUntil, m.LegalHold, nil
}

// Walk calls fn with the key of every object, in lexical order, skipping
// temporary files and metadata. It stops at and returns fn's first error.
func (s *Store) Walk(fn func(key string) error) error {
	return iofs.WalkDir(s.root.FS(), ".", func(p string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return fmt.Errorf("walk: %w", err)
		}
		if p == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return iofs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || checkKey(p) != nil {
			return nil
		}
		return fn(p)
	})
}

// RemoveStaleTemp deletes temporary files older than StaleTempAge (by the
// Store's clock) left behind by interrupted writes, and returns how many it
// removed. Younger ones may belong to a write in progress and are kept.
func (s *Store) RemoveStaleTemp() (int, error) {
	cutoff := s.now().Add(-StaleTempAge)
	n := 0
	err := iofs.WalkDir(s.root.FS(), ".", func(p string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == lockDir {
				return iofs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // finished meanwhile
		}
		if err != nil {
			return err
		}
		if !fi.ModTime().Before(cutoff) {
			return nil
		}
		if err := s.root.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("remove stale temp: %w", err)
	}
	return n, nil
}

// RemoveOrphanMeta deletes metadata whose object no longer exists (a Delete
// interrupted between its two removals) and returns how many it removed.
func (s *Store) RemoveOrphanMeta() (int, error) {
	var keys []string
	err := iofs.WalkDir(s.root.FS(), metaDir, func(p string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // removed while walking
		}
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || strings.HasPrefix(name, tempPrefix) || !strings.HasSuffix(name, metaSuffix) {
			return nil
		}
		key := strings.TrimSuffix(strings.TrimPrefix(p, metaDir+"/"), metaSuffix)
		if checkKey(key) != nil {
			return nil
		}
		if _, err := s.root.Lstat(key); errors.Is(err, iofs.ErrNotExist) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("remove orphan metadata: %w", err)
	}
	n := 0
	for _, key := range keys {
		removed, err := s.removeOrphan(key)
		if err != nil {
			return n, fmt.Errorf("remove orphan metadata: %w", err)
		}
		if removed {
			n++
		}
	}
	return n, nil
}

// removeOrphan removes key's metadata if, under the lock, the object is
// still absent; a Put in progress holds the lock from metadata to link.
func (s *Store) removeOrphan(key string) (bool, error) {
	unlock, err := s.lock(key)
	if err != nil {
		return false, err
	}
	defer unlock()
	if _, err := s.root.Lstat(key); !errors.Is(err, iofs.ErrNotExist) {
		return false, err
	}
	if err := s.removeMeta(key); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// prepare validates key, ctx, and that no directory on the way to key is a
// symlink (os.Root already stops escapes; this also refuses aliasing).
func (s *Store) prepare(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.checkDirs(key)
}

func (s *Store) checkDirs(key string) error {
	for i := 0; i < len(key); i++ {
		if key[i] != '/' {
			continue
		}
		fi, err := s.root.Lstat(key[:i])
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%q: %w", key, err)
		}
		if fi.Mode()&iofs.ModeSymlink != 0 {
			return fmt.Errorf("%w %s: %q is a symlink", storage.ErrInvalidKey, quote(key), key[:i])
		}
		if !fi.IsDir() {
			return nil // the object cannot exist; callers report not found
		}
	}
	return nil
}

// requireObject returns storage.ErrNotFound unless key is a regular file.
func (s *Store) requireObject(key string) error {
	fi, err := s.root.Lstat(key)
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) ||
		(err == nil && !fi.Mode().IsRegular()) {
		return storage.ErrNotFound
	}
	return err
}

// mkdirs creates dir and its parents (mode 0700), fsyncing each parent that
// gains an entry, and refuses symlinks or files on the way.
func (s *Store) mkdirs(dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	if _, ok := s.dirs.Load(dir); ok {
		return nil
	}
	if err := s.mkdirsWalk(dir); err != nil {
		return err
	}
	s.dirs.Store(dir, struct{}{})
	return nil
}

func (s *Store) mkdirsWalk(dir string) error {
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := s.root.Lstat(p)
		if errors.Is(err, iofs.ErrNotExist) {
			err = s.root.Mkdir(p, dirPerm)
			if err == nil {
				if err := s.syncDir(path.Dir(p)); err != nil {
					return err
				}
				continue
			}
			if !errors.Is(err, iofs.ErrExist) {
				return err
			}
			fi, err = s.root.Lstat(p) // created concurrently
		}
		if err != nil {
			return err
		}
		if fi.Mode()&iofs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %q is a symlink", storage.ErrInvalidKey, p)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %q is an object, not a directory", storage.ErrInvalidKey, p)
		}
	}
	return nil
}

// writeTemp writes data to a new temporary file in dir, sets attr (if not
// nil) as its metadata attribute, fsyncs it and gives it mode perm. It
// returns the file's name; on error nothing is left behind.
func (s *Store) writeTemp(dir string, data []byte, perm os.FileMode, attr []byte) (name string, err error) {
	var rnd [12]byte
	rand.Read(rnd[:])
	name = path.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	err = s.writeSynced(f, data, perm, attr)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.root.Remove(name)
		return "", err
	}
	return name, nil
}

// writeSynced writes data to the new file f, sets attr (if not nil) as its
// metadata attribute, gives it mode perm and fsyncs it: data, attribute
// and mode are durable together.
func (s *Store) writeSynced(f *os.File, data []byte, perm os.FileMode, attr []byte) error {
	if _, err := s.ops.Write(f, data); err != nil {
		return err
	}
	if attr != nil {
		if err := unix.Fsetxattr(int(f.Fd()), metaXattr, attr, 0); err != nil {
			return fmt.Errorf("set metadata attribute: %w", err)
		}
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	return s.ops.Sync(f)
}

// writeMeta atomically replaces key's metadata with b.
func (s *Store) writeMeta(key string, b []byte) error {
	mp := metaPath(key)
	dir := path.Dir(mp)
	if err := s.mkdirs(dir); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	tmp, err := s.writeTemp(dir, b, objectPerm, nil)
	if err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	if err := s.root.Rename(tmp, mp); err != nil {
		s.root.Remove(tmp)
		return fmt.Errorf("write metadata: %w", err)
	}
	if err := s.syncDir(dir); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// readMeta returns key's metadata: the sidecar once there is one, else
// the attribute Put set on the object.
func (s *Store) readMeta(key string) (meta, error) {
	b, err := s.root.ReadFile(metaPath(key))
	if errors.Is(err, iofs.ErrNotExist) {
		b, err = s.readMetaXattr(key)
	}
	if err != nil {
		return meta{}, fmt.Errorf("read metadata: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, fmt.Errorf("read metadata: %w", err)
	}
	return m, nil
}

// readMetaXattr reads the object's metadata attribute; errNoMeta if it
// has none.
func (s *Store) readMetaXattr(key string) ([]byte, error) {
	f, err := s.root.Open(key)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, errNoMeta
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(int(f.Fd()), metaXattr, buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 64<<10:
			buf = make([]byte, 4*len(buf))
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP):
			return nil, errNoMeta
		default:
			return nil, err
		}
	}
}

func (s *Store) removeMeta(key string) error {
	mp := metaPath(key)
	if err := s.root.Remove(mp); err != nil {
		return err
	}
	return s.syncDir(path.Dir(mp))
}

func (s *Store) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %q: %w", dir, err)
	}
	return nil
}

// lock takes the exclusive flock of key's stripe. Each call opens its own
// file description, so goroutines of one process exclude each other too.
func (s *Store) lock(key string) (unlock func(), err error) {
	h := fnv.New32a()
	h.Write([]byte(key))
	name := fmt.Sprintf("%s/%02x", lockDir, h.Sum32()%lockStripes)
	f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	var ferr error
	err = rc.Control(func(fd uintptr) {
		for {
			ferr = unix.Flock(int(fd), unix.LOCK_EX)
			if ferr != unix.EINTR {
				return
			}
		}
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	// Closing the last descriptor of the file description drops the flock.
	return func() { f.Close() }, nil
}

func metaPath(key string) string {
	return metaDir + "/" + key + metaSuffix
}

// checkKey accepts slash-separated segments of [A-Za-z0-9._-], none empty and
// none starting with "." (which also rules out "." and ".."), at most
// MaxKeyLen bytes in all.
func checkKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %s: %s", storage.ErrInvalidKey, quote(key), why)
	}
	if key == "" {
		return bad("empty")
	}
	if len(key) > MaxKeyLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxKeyLen))
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" {
			return bad("empty path segment (leading, trailing or double slash)")
		}
		if seg[0] == '.' {
			return bad("path segment starts with '.'")
		}
		if len(seg) > maxSegmentLen {
			return bad(fmt.Sprintf("path segment longer than %d bytes", maxSegmentLen))
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return bad(fmt.Sprintf("byte %q not in [A-Za-z0-9._/-]", c))
			}
		}
	}
	return nil
}

// quote renders a key for an error message, shortened so that a hostile
// multi-kilobyte key does not flood logs.
func quote(key string) string {
	const max = 64
	if len(key) > max {
		return fmt.Sprintf("%q...", key[:max])
	}
	return fmt.Sprintf("%q", key)
}

// List returns the keys of the objects under the directory prefix (a key
// prefix ending in "/"), or of every object for "", in lexical order.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	dir := strings.TrimSuffix(prefix, "/")
	if dir == "" {
		dir = "." // the whole store; metadata, locks and temporary files are skipped below
	} else if err := checkKey(dir); err != nil {
		return nil, err
	}
	var keys []string
	err := iofs.WalkDir(s.root.FS(), dir, func(p string, d iofs.DirEntry, err error) error {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return iofs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && checkKey(p) == nil {
			keys = append(keys, p)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	return keys, nil
}
