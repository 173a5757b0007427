package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Source.Submit once the source is closed, either
// by Close or because its run was cancelled.
var ErrClosed = errors.New("pipeline: source closed")

// Stage describes one step of a pipeline.
type Stage[In, Out any] struct {
	// Name labels the stage's metrics and its errors.
	Name string
	// Workers is the number of goroutines calling Fn; values below 1 mean 1.
	Workers int
	// Ordered stages call Fn on each key's items in the order they were
	// submitted, buffering items that arrive early. Workers must then be 1.
	Ordered bool
	// Fn does the work. It gets the context given to Then or Sink.
	Fn func(ctx context.Context, in In) (Out, error)
	// OnError, if set, is called for every failed item that reaches this
	// stage: stage names where it failed (this one or one upstream), and seq
	// is the item's number within key. Fn is not called for items that
	// failed upstream. A parallel stage's workers may call it concurrently;
	// an Ordered stage calls it in the item's place in the key's order, so
	// a gap can be recorded where it belongs. A panic in OnError is
	// swallowed.
	OnError func(key string, seq uint64, stage string, err error)
}

// PanicError is the error an item carries when a Fn panicked on it.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

type item[T any] struct {
	key string
	seq uint64
	// base is the seq of the oldest item of key still in flight when this
	// one was submitted: an Ordered stage that holds no state for the key
	// starts waiting from there.
	base  uint64
	val   T
	err   error
	stage string // where err arose
}

// keyState is a Source's bookkeeping for one key.
type keyState struct {
	next   uint64 // seq of the next accepted item
	base   uint64
	live   int // accepted and not yet finished by the sink
	forget bool
}

// releaser is an Ordered stage's per-key state, dropped when its key has
// nothing in flight.
type releaser interface{ release(key string) }

// sourceCore is the part of a Source that does not depend on its item type.
type sourceCore struct {
	name string
	m    *Metrics
	sm   stageMetrics

	mu       sync.Mutex
	closed   bool
	closedCh chan struct{}
	closeQ   func() // closes the typed queue; called with mu held
	keys     map[string]*keyState
	ordered  []releaser
	run      *runState
}

func (c *sourceCore) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.closeQ()
		close(c.closedCh)
	}
}

// finish records that the sink is done with an item of key.
func (c *sourceCore) finish(key string) {
	c.sm.inFlight.Dec()
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[key]
	if k == nil {
		return
	}
	if k.live--; k.live > 0 {
		return
	}
	// Nothing of key is left anywhere, and no new item can be numbered
	// while mu is held, so the Ordered stages can forget the key safely;
	// the next item starts a fresh base.
	for _, o := range c.ordered {
		o.release(key)
	}
	if k.forget {
		delete(c.keys, key)
	}
}

// Source is where items enter a pipeline.
type Source[T any] struct {
	sourceCore
	ch     chan item[T]
	tokens chan struct{} // one per queued item; Submit blocks on it, not on ch
}

// NewSource returns a source whose queue holds up to queue items (at least
// 1). m may be nil, for no metrics.
func NewSource[T any](name string, queue int, m *Metrics) *Source[T] {
	queue = max(queue, 1)
	if m == nil {
		m = NewMetrics(nil, "")
	}
	s := &Source[T]{
		ch:     make(chan item[T], queue),
		tokens: make(chan struct{}, queue),
	}
	s.sourceCore = sourceCore{
		name:     name,
		m:        m,
		sm:       m.stage(name),
		closedCh: make(chan struct{}),
		closeQ:   func() { close(s.ch) },
		keys:     make(map[string]*keyState),
	}
	return s
}

// Submit queues v under key, blocking while the queue is full. It fails
// with ctx's error or ErrClosed; a failed Submit uses up no sequence
// number, so the n-th successful Submit of a key (counting from 0) is item
// seq n of that key.
func (s *Source[T]) Submit(ctx context.Context, key string, v T) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pipeline: submit to %q: %w", s.name, err)
	}
	// The token is taken before the item is numbered, and the item is
	// numbered and queued under one lock, so queue order is seq order and
	// no number is ever handed out for an item that is not queued.
	select {
	case s.tokens <- struct{}{}:
	default:
		if err := s.wait(ctx); err != nil {
			return err
		}
	}
	if !s.push(key, v) {
		<-s.tokens
		return fmt.Errorf("pipeline: submit to %q: %w", s.name, ErrClosed)
	}
	return nil
}

// wait blocks until the queue has room and takes its token, counting the
// time in the blocked metrics: a full queue is backpressure reaching the
// producer, which must show.
func (s *Source[T]) wait(ctx context.Context) error {
	t0 := time.Now()
	s.sm.blocked.Inc()
	defer func() {
		s.sm.blocked.Dec()
		s.sm.blockedS.Add(time.Since(t0).Seconds())
	}()
	select {
	case s.tokens <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pipeline: submit to %q: %w", s.name, ctx.Err())
	case <-s.closedCh:
		return fmt.Errorf("pipeline: submit to %q: %w", s.name, ErrClosed)
	}
}

// TrySubmit queues v under key if there is room now, and reports whether
// it did. Refusals because the queue is full are counted in rejected_total.
func (s *Source[T]) TrySubmit(key string, v T) bool {
	select {
	case s.tokens <- struct{}{}:
	default:
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			s.sm.rejected.Inc()
		}
		return false
	}
	if !s.push(key, v) {
		<-s.tokens
		return false
	}
	return true
}

func (s *Source[T]) push(key string, v T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	k := s.keys[key]
	if k == nil {
		k = &keyState{}
		s.keys[key] = k
	}
	if k.live == 0 {
		k.base = k.next
	}
	k.forget = false
	s.ch <- item[T]{key: key, seq: k.next, base: k.base, val: v} // cannot block: we hold a token
	k.next++
	k.live++
	s.sm.items.Inc()
	s.sm.inFlight.Inc()
	return true
}

// Close ends the input: items already accepted drain through every stage,
// then the run ends. Close is idempotent.
func (s *Source[T]) Close() { s.close() }

// Forget releases key's sequence counter once key's accepted items have
// left the pipeline; call it when a stream ends so that a long-running
// process does not keep one counter per key it ever saw. A Submit of key
// before that point cancels the Forget and continues the sequence; one
// after it starts a new sequence at 0.
func (s *Source[T]) Forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[key]
	switch {
	case k == nil:
	case k.live == 0:
		delete(s.keys, key)
	default:
		k.forget = true
	}
}

// Pipe is the output of a source or stage, to be consumed by exactly one
// following stage.
type Pipe[T any] struct {
	r    *runState
	ch   <-chan item[T]
	took func() // called after each receive; frees the source's token
	used atomic.Bool
}

// From starts a pipeline at s. A source feeds one pipeline: calling From
// twice on it panics.
func From[T any](s *Source[T]) *Pipe[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.run != nil {
		panic(fmt.Sprintf("pipeline: source %q already feeds a pipeline", s.name))
	}
	s.run = &runState{src: &s.sourceCore, m: s.m, stop: make(chan struct{}), done: make(chan struct{})}
	return &Pipe[T]{r: s.run, ch: s.ch, took: func() { <-s.tokens }}
}

// Then appends st to p, with an output queue of queue items, and starts
// its workers. Cancelling ctx stops the whole run.
//
// Then panics on a stage that cannot work (no Fn, Ordered with several
// workers) and on a Pipe that already feeds a stage: these are wiring
// mistakes, made once at start-up.
func Then[In, Out any](ctx context.Context, p *Pipe[In], st Stage[In, Out], queue int) *Pipe[Out] {
	out := make(chan item[Out], max(queue, 0))
	r := p.r
	start(ctx, p, st, func(it item[Out]) bool {
		select {
		case out <- it:
			return true
		case <-r.stop:
			return false
		}
	}, func() { close(out) })
	return &Pipe[Out]{r: r, ch: out}
}

// Sink appends the last stage and returns the running pipeline. Cancelling
// ctx stops the whole run. It panics on wiring mistakes, as Then does.
func Sink[T any](ctx context.Context, p *Pipe[T], st Stage[T, struct{}]) *Run {
	r := p.r
	start(ctx, p, st, func(it item[struct{}]) bool {
		r.src.finish(it.key)
		return true
	}, nil)
	go r.finishWhenDone()
	return &Run{r: r}
}

// Run is a started pipeline.
type Run struct{ r *runState }

// Wait blocks until every worker has returned: after Source.Close once all
// accepted items went through the sink (nil), or after a context given to
// Then or Sink was cancelled (its cause). Errors of single items go to the
// OnError callbacks, not here.
func (r *Run) Wait() error {
	<-r.r.done
	return r.r.result
}

type runState struct {
	src  *sourceCore
	m    *Metrics
	wg   sync.WaitGroup
	stop chan struct{} // closed on abort
	done chan struct{} // closed when every worker has returned

	mu       sync.Mutex
	err      error
	finished bool
	result   error
	cleanups []func()
}

func (r *runState) abort(err error) {
	r.mu.Lock()
	if r.finished || r.err != nil {
		r.mu.Unlock()
		return
	}
	if err == nil {
		err = context.Canceled
	}
	r.err = err
	close(r.stop)
	r.mu.Unlock()
	r.src.close()
}

func (r *runState) onDone(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

func (r *runState) finishWhenDone() {
	r.wg.Wait()
	r.mu.Lock()
	r.finished = true
	r.result = r.err
	cleanups := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for _, f := range cleanups {
		f()
	}
	close(r.done)
}

type stage[In, Out any] struct {
	ctx     context.Context
	name    string
	fn      func(context.Context, In) (Out, error)
	onError func(key string, seq uint64, stage string, err error)
	m       stageMetrics
	r       *runState
	in      *Pipe[In]
	emit    func(item[Out]) bool // false when the run stopped
}

func start[In, Out any](ctx context.Context, p *Pipe[In], st Stage[In, Out], emit func(item[Out]) bool, closeOut func()) {
	if st.Fn == nil {
		panic(fmt.Sprintf("pipeline: stage %q has no Fn", st.Name))
	}
	workers := max(st.Workers, 1)
	if st.Ordered && workers != 1 {
		panic(fmt.Sprintf("pipeline: ordered stage %q must have 1 worker, not %d", st.Name, st.Workers))
	}
	if !p.used.CompareAndSwap(false, true) {
		panic(fmt.Sprintf("pipeline: stage %q: pipe already feeds another stage", st.Name))
	}
	r := p.r
	s := &stage[In, Out]{
		ctx: ctx, name: st.Name, fn: st.Fn, onError: st.OnError,
		m: r.m.stage(st.Name), r: r, in: p, emit: emit,
	}
	in := p.ch
	r.onDone(r.m.depth.track(st.Name, func() int { return len(in) }))
	stopAfter := context.AfterFunc(ctx, func() { r.abort(context.Cause(ctx)) })
	r.onDone(func() { stopAfter() })

	var o *ordered[In]
	if st.Ordered {
		o = &ordered[In]{keys: make(map[string]*orderedKey[In])}
		r.src.mu.Lock()
		r.src.ordered = append(r.src.ordered, o)
		r.src.mu.Unlock()
	}
	var left atomic.Int32
	left.Store(int32(workers))
	r.wg.Add(workers)
	for range workers {
		go func() {
			defer r.wg.Done()
			if o != nil {
				s.runOrdered(o)
			} else {
				s.runParallel()
			}
			if left.Add(-1) == 0 && closeOut != nil {
				closeOut()
			}
		}()
	}
}

// next receives the stage's next item; false when the input is exhausted
// or the run stopped.
func (s *stage[In, Out]) next() (item[In], bool) {
	select {
	case it, ok := <-s.in.ch:
		if !ok {
			return it, false
		}
		if s.in.took != nil {
			s.in.took()
		}
		select {
		case <-s.r.stop:
			// Both were ready and select chose the item: don't start work
			// on a stopped run.
			return it, false
		default:
		}
		return it, true
	case <-s.r.stop:
		return item[In]{}, false
	}
}

func (s *stage[In, Out]) runParallel() {
	for {
		it, ok := s.next()
		if !ok {
			return
		}
		s.m.inFlight.Inc()
		sent := s.emit(s.process(it))
		s.m.inFlight.Dec()
		if !sent {
			return
		}
	}
}

type orderedKey[T any] struct {
	next    uint64
	pending map[uint64]item[T]
}

// ordered is an Ordered stage's per-key state. Its mutex is needed only
// because the sink releases keys from another goroutine.
type ordered[T any] struct {
	mu   sync.Mutex
	keys map[string]*orderedKey[T]
}

func (o *ordered[T]) release(key string) {
	o.mu.Lock()
	delete(o.keys, key)
	o.mu.Unlock()
}

func (s *stage[In, Out]) runOrdered(o *ordered[In]) {
	for {
		it, ok := s.next()
		if !ok {
			return
		}
		s.m.inFlight.Inc()
		o.mu.Lock()
		k := o.keys[it.key]
		if k == nil {
			k = &orderedKey[In]{next: it.base}
			o.keys[it.key] = k
		}
		if it.seq > k.next {
			if k.pending == nil {
				k.pending = make(map[uint64]item[In])
			}
			k.pending[it.seq] = it
			o.mu.Unlock()
			continue
		}
		if it.seq == k.next {
			k.next++
		} // else it is older than next, which numbering rules out: pass it on rather than hold it forever
		o.mu.Unlock()
		key := it.key
		for {
			sent := s.emit(s.process(it))
			s.m.inFlight.Dec()
			if !sent {
				return
			}
			// Look the key up again: once the item is handed on, the sink
			// may finish it and release the key, which it does only when
			// nothing of the key is pending here.
			o.mu.Lock()
			k := o.keys[key]
			if k == nil {
				o.mu.Unlock()
				break
			}
			nx, ok := k.pending[k.next]
			if !ok {
				o.mu.Unlock()
				break
			}
			delete(k.pending, k.next)
			k.next++
			o.mu.Unlock()
			it = nx
		}
	}
}

func (s *stage[In, Out]) process(it item[In]) item[Out] {
	out := item[Out]{key: it.key, seq: it.seq, base: it.base, err: it.err, stage: it.stage}
	if it.err == nil {
		t0 := time.Now()
		v, size, err := s.call(it.val)
		s.m.latency.Observe(time.Since(t0).Seconds())
		if err != nil {
			out.err, out.stage = err, s.name
			s.m.errors.Inc()
		} else {
			out.val = v
			if size > 0 {
				s.m.bytes.Add(float64(size))
			}
		}
	}
	if out.err != nil && s.onError != nil {
		s.report(out.key, out.seq, out.stage, out.err)
	}
	s.m.items.Inc()
	return out
}

type sizer interface{ Size() int }

// call runs Fn, turning a panic (in Fn or in the output's Size method)
// into an error: one bad item must not bring down the node.
func (s *stage[In, Out]) call(in In) (out Out, size int, err error) {
	defer func() {
		if v := recover(); v != nil {
			var zero Out
			out, size, err = zero, 0, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	out, err = s.fn(s.ctx, in)
	if err == nil {
		if sz, ok := any(out).(sizer); ok {
			size = sz.Size()
		}
	}
	return out, size, err
}

// report calls OnError. A panic there is swallowed: the item already
// carries its error and goes on; crashing would lose more than the record.
func (s *stage[In, Out]) report(key string, seq uint64, stage string, err error) {
	defer func() { _ = recover() }()
	s.onError(key, seq, stage, err)
}
