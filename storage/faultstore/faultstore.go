// Package faultstore injects the faults of a slow or failing store into a
// real one, for tests: errors (for the next N calls, or each call with a
// probability drawn from a seeded source), stalls (for a duration, or
// until released), writes that fail midway, fsyncs that fail, and
// operations that land but whose answer is lost.
//
// One Faults program serves every seam: Wrap puts it around any
// storage.ChunkStore; FileOps feeds the fs store's file calls
// (fs.WithFileOps) for partial writes and fsync failures; Transport sits
// under the s3 store's HTTP client (s3.Config.Transport) for uploads cut
// off midway and answers lost after the object landed. Other seams (the
// catalog the commit stage uses) call Inject themselves.
package faultstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"camvault/storage"
)

// Op names an operation faults can be set on.
type Op string

// The operations of a ChunkStore (Wrap), of the fs store's files
// (FileOps), and of an S3 client's object uploads (Transport).
const (
	Put       Op = "put"
	Get       Op = "get"
	Delete    Op = "delete"
	Extend    Op = "extend"
	LegalHold Op = "legal-hold"
	List      Op = "list"
	Write     Op = "write"   // a file data write of the fs store
	Sync      Op = "fsync"   // an fsync of a file or directory of the fs store
	Upload    Op = "upload"  // an HTTP PUT of an object to S3
	Catalog   Op = "catalog" // a catalog call, for seams that call Inject
)

// ErrInjected is the error a Fault returns when it names none.
var ErrInjected = errors.New("faultstore: injected fault")

// Fault is what happens to the calls of one operation.
type Fault struct {
	// Err is the error returned; ErrInjected if nil.
	Err error
	// Skip lets this many calls through before the fault starts (to hit
	// the second fsync of a put, the directory's, say).
	Skip int
	// Times is how many calls the fault hits before it clears itself;
	// 0 means every call until Clear.
	Times int
	// Prob, if above 0, hits each call with this probability (drawn from
	// the Faults' seeded source) instead of every one; Times then counts
	// hits.
	Prob float64
	// Stall delays each hit call by this long before its fault (or, with
	// no Err and Stall only, before it proceeds normally).
	Stall time.Duration
	// StallOnly makes a hit call only wait out Stall and then proceed.
	StallOnly bool
	// After, for Write and Upload, lets this many bytes through before
	// the write fails: a write cut off midway.
	After int
	// Landed carries the call out and then reports the error: the object
	// is stored, its answer lost (a dropped connection after the PUT).
	Landed bool
}

// Faults is a programme of faults per operation, safe for concurrent use.
type Faults struct {
	mu      sync.Mutex
	rnd     *rand.Rand
	faults  map[Op]*Fault
	gates   map[Op]chan struct{}
	hits    map[Op]int
	calls   map[Op]int
	waiting map[Op]int
	peak    map[Op]int
}

// New returns an empty programme whose probabilities are drawn from a
// source seeded with seed, so a failing run can be replayed.
func New(seed uint64) *Faults {
	return &Faults{
		rnd:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		faults: map[Op]*Fault{}, gates: map[Op]chan struct{}{},
		hits: map[Op]int{}, calls: map[Op]int{}, waiting: map[Op]int{}, peak: map[Op]int{},
	}
}

// Set replaces op's fault.
func (f *Faults) Set(op Op, ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = &ft
}

// Clear removes op's fault.
func (f *Faults) Clear(op Op) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, op)
}

// Block makes every call of op wait, from now until release is called
// (or the call's context ends): a store that hangs.
func (f *Faults) Block(op Op) (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.gates[op]
	if !ok {
		ch = make(chan struct{})
		f.gates[op] = ch
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.gates[op] == ch {
				delete(f.gates, op)
			}
			f.mu.Unlock()
			close(ch)
		})
	}
}

// Hits returns how many calls of op a fault has hit.
func (f *Faults) Hits(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[op]
}

// Calls returns how many calls of op were made, hit or not.
func (f *Faults) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Waiting returns how many calls of op are held by Block now, and the
// most that were at once.
func (f *Faults) Waiting(op Op) (now, peak int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting[op], f.peak[op]
}

// hit is the outcome of Inject's draw for one call.
type hit struct {
	err    error
	after  int
	landed bool
}

// draw counts a call of op and decides whether its fault hits it.
func (f *Faults) draw(op Op) (h hit, ok bool, stall time.Duration, gate chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	gate = f.gates[op]
	ft := f.faults[op]
	if ft != nil && ft.Skip > 0 {
		ft.Skip--
		return hit{}, false, 0, gate
	}
	if ft == nil || (ft.Prob > 0 && f.rnd.Float64() >= ft.Prob) {
		return hit{}, false, 0, gate
	}
	f.hits[op]++
	if ft.Times > 0 {
		if ft.Times--; ft.Times == 0 {
			delete(f.faults, op)
		}
	}
	if ft.StallOnly {
		return hit{}, false, ft.Stall, gate
	}
	err := ft.Err
	if err == nil {
		err = ErrInjected
	}
	return hit{err: fmt.Errorf("%s: %w", op, err), after: ft.After, landed: ft.Landed}, true, ft.Stall, gate
}

// enter waits out a Block of op and a stall, then reports the call's fault.
func (f *Faults) enter(ctx context.Context, op Op) (hit, bool, error) {
	h, ok, stall, gate := f.draw(op)
	if gate != nil {
		f.mu.Lock()
		f.waiting[op]++
		f.peak[op] = max(f.peak[op], f.waiting[op])
		f.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.waiting[op]--
		f.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return hit{}, false, err
		}
	}
	if stall > 0 {
		t := time.NewTimer(stall)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return hit{}, false, ctx.Err()
		}
	}
	return h, ok, nil
}

// Inject applies op's programme to one call at a seam that has no
// wrapper here: it waits out a Block or a stall and returns the fault's
// error, or nil for the call to proceed. A Landed fault returns nil and
// is lost on such a seam; use Wrap for those.
func (f *Faults) Inject(ctx context.Context, op Op) error {
	h, ok, err := f.enter(ctx, op)
	if err != nil {
		return err
	}
	if ok && !h.landed {
		return h.err
	}
	return nil
}

// around runs call under op's programme.
func (f *Faults) around(ctx context.Context, op Op, call func() error) error {
	h, ok, err := f.enter(ctx, op)
	if err != nil {
		return err
	}
	if ok && !h.landed {
		return h.err
	}
	if err := call(); err != nil || !ok {
		return err
	}
	return h.err
}

// Store is a storage.ChunkStore with faults injected in front of another.
type Store struct {
	next storage.ChunkStore
	f    *Faults
}

var (
	_ storage.ChunkStore = (*Store)(nil)
	_ storage.Lister     = (*Store)(nil)
)

// Wrap returns next with f's faults injected into its calls.
func Wrap(next storage.ChunkStore, f *Faults) *Store { return &Store{next: next, f: f} }

// Put implements storage.ChunkStore.
func (s *Store) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	return s.f.around(ctx, Put, func() error { return s.next.Put(ctx, key, data, retainUntil) })
}

// Get implements storage.ChunkStore.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.f.around(ctx, Get, func() error {
		var err error
		rc, err = s.next.Get(ctx, key)
		return err
	})
	if err != nil && rc != nil {
		rc.Close()
		rc = nil
	}
	return rc, err
}

// Delete implements storage.ChunkStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.f.around(ctx, Delete, func() error { return s.next.Delete(ctx, key) })
}

// Extend implements storage.ChunkStore.
func (s *Store) Extend(ctx context.Context, key string, retainUntil time.Time) error {
	return s.f.around(ctx, Extend, func() error { return s.next.Extend(ctx, key, retainUntil) })
}

// SetLegalHold implements storage.ChunkStore.
func (s *Store) SetLegalHold(ctx context.Context, key string, on bool) error {
	return s.f.around(ctx, LegalHold, func() error { return s.next.SetLegalHold(ctx, key, on) })
}

// List implements storage.Lister when the wrapped store does.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	l, ok := s.next.(storage.Lister)
	if !ok {
		return nil, fmt.Errorf("list %q: %T cannot list", prefix, s.next)
	}
	var keys []string
	err := s.f.around(ctx, List, func() error {
		var err error
		keys, err = l.List(ctx, prefix)
		return err
	})
	return keys, err
}

// WriteFile is a write for fs.FileOps.Write under the Write programme: an
// After fault writes that many bytes, then fails.
func (f *Faults) WriteFile(file *os.File, p []byte) (int, error) {
	h, ok, err := f.enter(context.Background(), Write)
	if err != nil || !ok {
		if err != nil {
			return 0, err
		}
		return file.Write(p)
	}
	if h.landed {
		if n, err := file.Write(p); err != nil {
			return n, err
		}
		return len(p), h.err
	}
	n, _ := file.Write(p[:min(h.after, len(p))])
	return n, h.err
}

// SyncFile is an fsync for fs.FileOps.Sync under the Sync programme.
func (f *Faults) SyncFile(file *os.File) error {
	return f.around(context.Background(), Sync, file.Sync)
}

// Transport returns an http.RoundTripper that sends requests through
// next (http.DefaultTransport if nil) with the Upload programme applied to
// object PUTs (PUTs with a body and no sub-resource query): an After
// fault cuts the body off after that many bytes, a Landed one lets the
// request through and then drops its answer.
func (f *Faults) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{f: f, next: next}
}

type transport struct {
	f    *Faults
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPut || req.Body == nil || req.URL.RawQuery != "" {
		return t.next.RoundTrip(req)
	}
	h, ok, err := t.f.enter(req.Context(), Upload)
	if err != nil {
		req.Body.Close()
		return nil, err
	}
	if !ok {
		return t.next.RoundTrip(req)
	}
	if h.landed {
		resp, err := t.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, h.err
	}
	if h.after <= 0 {
		req.Body.Close()
		return nil, h.err
	}
	cut := req.Clone(req.Context())
	cut.Body = &cutReader{r: req.Body, left: h.after, err: h.err}
	resp, err := t.next.RoundTrip(cut)
	if err == nil {
		// The server answered a request whose body never ended; whatever it
		// says, this upload failed.
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		err = h.err
	}
	return nil, err
}

// cutReader reads left bytes of r, then fails with err.
type cutReader struct {
	r    io.ReadCloser
	left int
	err  error
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.err
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

func (c *cutReader) Close() error { return c.r.Close() }
