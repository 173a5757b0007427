// Package transcode is the ingest side's derived-work stage: a pool of
// low-priority workers that turn original segments into review proxies and
// thumbnails while the originals go on to be sealed.
//
// The stage is lag-tolerant by design. Derived renditions are a convenience
// (a reviewer can have a shed proxy made on demand later, where the key is);
// the originals are the evidence. So nothing here ever makes the caller
// wait: TrySubmit either queues a job at once or refuses it, and the workers
// run on OS threads niced below ingest, so that x264 gets the CPU only when
// packet readers, segmenting and sealing leave it. A Session is one ingest
// session's branch: its renditions come back as items of that session's
// pipeline, so they are sealed, stored and committed like the originals.
//
// The stage's CPU is budgeted (Config.CPU, in cores): each job's CPU time
// is measured on its worker's thread and charged to a token bucket that
// fills at the budget's rate, and a job is admitted only while the bucket
// has credit. The decision is made when a segment is offered, before its
// plaintext is copied, so work beyond the budget is shed for the price
// of a gap record: it is never copied, queued or decoded.
//
// The pool is its own rather than a pipeline stage because derived work
// needs what the evidence path must never have: two priority classes
// (thumbnails before proxies), queued jobs shed per session at its end,
// and niced OS threads. Its queue refuses at once when full, the same
// non-blocking contract as pipeline.Source.TrySubmit.
package transcode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"camvault/internal/bufpool"
)

// Renderer makes derived renditions of one original segment: init is the
// session's init segment, segment one media segment, both plaintext in the
// session's container (fMP4 for H.264, WebM for VP8). The proxy comes back
// as its own fMP4 init + one media segment with the same timestamps as the
// original (first frame IDR); the thumbnail is a JPEG.
type Renderer interface {
	Proxy(ctx context.Context, init, segment []byte) (proxyInit, proxySegment []byte, err error)
	Thumbnail(ctx context.Context, init, segment []byte) ([]byte, error)
}

// Kind is the rendition a job makes.
type Kind int

// Kinds of jobs. Thumbnails are cheap and run before any waiting proxy.
const (
	Thumb Kind = iota
	Proxy
)

func (k Kind) String() string {
	if k == Thumb {
		return "thumb"
	}
	return "proxy"
}

// Why derived work was not done; the recorder writes these as the notes of
// the gap records that take its place.
var (
	ErrQueueFull = errors.New("derived work shed: transcode queue full")
	// ErrOverBudget: the stage has used its CPU budget (Config.CPU).
	ErrOverBudget = errors.New("derived work shed: over the transcode CPU budget")
	ErrCancelled  = errors.New("derived work shed: session ended before the job started")
	ErrClosed     = errors.New("derived work shed: transcode stage closed")
)

// IsShed reports whether err means the job was shed (never run), as
// opposed to a renderer that failed on it.
func IsShed(err error) bool {
	return errors.Is(err, ErrQueueFull) || errors.Is(err, ErrOverBudget) || errors.Is(err, ErrCancelled) || errors.Is(err, ErrClosed)
}

// Job is one rendition of one segment.
type Job struct {
	Kind Kind
	// Group names the jobs that Cancel sheds together (a session).
	Group string
	// Init and Segment are only read, possibly by two jobs at once (the
	// thumbnail and the proxy of one segment share a copy).
	Init, Segment []byte
	// Done is called exactly once for every accepted job: by a worker with
	// the rendition or the renderer's error, or, for a job shed after it
	// was queued, by Cancel or Close with ErrCancelled or ErrClosed. It
	// runs on a worker's thread or in the caller of Cancel/Close, so it
	// must not wait for anything those hold.
	Done func(Result)

	// Set by the stage when it admits the job.
	reserved float64 // CPU-seconds reserved in the budget until charged or refunded
	bytes    int     // bytes counted against QueueBytes (0 when hold counts them)
	hold     *hold   // the pooled copy the job reads, shared with the segment's other job
}

// hold is one segment's pooled plaintext copy, shared by the jobs of that
// segment. Its bytes count against Config.QueueBytes from the first job
// admitted until the last one using it is done; then the buffer goes back
// to the pool. refs is guarded by Stage.mu.
type hold struct {
	n    int
	buf  []byte
	refs int
}

// Result of a job.
type Result struct {
	Kind Kind
	Init []byte // Proxy only: the proxy's init segment
	Data []byte // the proxy's media segment, or the JPEG
	Err  error
}

// Config of the stage; zero values take the defaults.
type Config struct {
	// Workers is the number of transcoding threads; default the number of
	// cores minus one (one is left for ingest), at least 1.
	Workers int
	// Queue is how many proxy jobs may wait; default 4 per worker, enough
	// to ride out cameras whose segments happen to be cut together
	// (BenchmarkCameras shed at half the sustainable load with 2). A longer
	// queue only delays shedding under sustained overload, and every
	// waiting job holds a segment's copy.
	Queue int
	// ThumbQueue is how many thumbnail jobs may wait; default 4 × Queue:
	// thumbnails are cheap and must not be shed before proxies are.
	ThumbQueue int
	// Nice is the workers' niceness (higher is lower priority); default
	// 10. Negative keeps the process's priority.
	Nice int
	// QueueBytes bounds the bytes of segment copies the stage holds for
	// jobs waiting or running (a thumbnail and a proxy of one segment
	// share one copy); default 16 MiB per worker. Beyond it jobs are shed
	// as with a full queue: the item limits alone would let cameras of a
	// high bitrate pin many megabytes each.
	QueueBytes int
	// CPU is the stage's budget in cores (0.5: half a core over time);
	// 0 or negative: none, the workers take whatever CPU their niceness
	// gets them. Each job's CPU time is measured on its worker's thread,
	// so a renderer must do its work on the calling thread (a
	// codec.ProxyRenderer with Threads 1) for the budget to see it all.
	CPU float64
	// Burst is how long an idle stage saves its budget up for (the
	// bucket holds CPU × Burst CPU-seconds); default 10 s, enough for a
	// few proxies at once after a quiet spell.
	Burst time.Duration
	// Now is the clock the budget refills by; default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = max(runtime.NumCPU()-1, 1)
	}
	if c.Queue <= 0 {
		c.Queue = 4 * c.Workers
	}
	if c.ThumbQueue <= 0 {
		c.ThumbQueue = 4 * c.Queue
	}
	if c.Nice == 0 {
		c.Nice = 10
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 16 << 20 * c.Workers
	}
	if c.Burst <= 0 {
		c.Burst = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stage is the worker pool. Its methods are safe for concurrent use.
type Stage struct {
	cfg Config
	r   Renderer
	log *slog.Logger
	m   *metrics

	ctx    context.Context // given to the renderer; cancelled only after Close's wait
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	queues  [2][]*Job // by Kind
	pending [2]int    // admitted, not queued yet (Session.Segment between its two steps)
	held    int       // bytes counted against QueueBytes
	budget  *budget   // nil: no CPU budget
	closed  bool
}

// New starts cfg.Workers workers. reg may be nil (no metrics registered).
func New(cfg Config, r Renderer, reg prometheus.Registerer, log *slog.Logger) (*Stage, error) {
	if r == nil {
		return nil, errors.New("transcode: no renderer")
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stage{cfg: cfg, r: r, log: log, m: m, ctx: ctx, cancel: cancel}
	if cfg.CPU > 0 {
		s.budget = newBudget(cfg.CPU, cfg.Burst, cfg.Now())
	}
	s.cond = sync.NewCond(&s.mu)
	s.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go s.worker()
	}
	return s, nil
}

// Workers returns the pool's size.
func (s *Stage) Workers() int { return s.cfg.Workers }

// TrySubmit queues j if the stage takes it now (its queue has room, in
// items and bytes, and the CPU budget has credit) and returns nil, or
// returns why not (ErrQueueFull, ErrOverBudget, ErrClosed) at once and
// never calls j.Done. It never waits for a worker.
func (s *Stage) TrySubmit(j *Job) error {
	if err := validJob(j); err != nil {
		return err
	}
	if err := s.admit(j, nil); err != nil {
		return err
	}
	return s.enqueue(j)
}

func validJob(j *Job) error {
	if j == nil || j.Done == nil || (j.Kind != Thumb && j.Kind != Proxy) {
		return errors.New("transcode: malformed job")
	}
	return nil
}

// admit decides whether the stage takes j, before anything is copied for
// it: h is the copy j will share once made (nil: j.Segment is counted on
// its own). An admitted job holds its place in the queue, its bytes and
// its CPU estimate until enqueue queues it, and then until it is done
// or shed (release).
func (s *Stage) admit(j *Job, h *hold) error {
	limit := s.cfg.Queue
	if j.Kind == Thumb {
		limit = s.cfg.ThumbQueue
	}
	need := len(j.Segment)
	if h != nil {
		need = 0
		if h.refs == 0 {
			need = h.n
		}
	}
	kind := j.Kind.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		s.m.shed.WithLabelValues(kind, "closed").Inc()
		return ErrClosed
	case len(s.queues[j.Kind])+s.pending[j.Kind] >= limit:
		s.m.shed.WithLabelValues(kind, "queue_full").Inc()
		return ErrQueueFull
	case s.held+need > s.cfg.QueueBytes && s.held > 0:
		// One segment larger than the whole limit is still taken when
		// nothing else is held: refusing it would shed every rendition
		// of a high-bitrate camera however idle the stage is.
		s.m.shed.WithLabelValues(kind, "queue_bytes").Inc()
		return ErrQueueFull
	}
	if s.budget != nil {
		est, ok := s.budget.admit(j.Kind, s.cfg.Now())
		if !ok {
			s.m.shed.WithLabelValues(kind, "cpu_budget").Inc()
			return ErrOverBudget
		}
		j.reserved = est
	}
	s.pending[j.Kind]++
	s.held += need
	if h != nil {
		h.refs++
		j.hold = h
	} else {
		j.bytes = need
	}
	s.m.held.Set(float64(s.held))
	return nil
}

// enqueue queues an admitted job; ErrClosed (j released, Done not
// called) if the stage closed since.
func (s *Stage) enqueue(j *Job) error {
	s.mu.Lock()
	s.pending[j.Kind]--
	if s.closed {
		s.release(j, false)
		s.mu.Unlock()
		s.m.shed.WithLabelValues(j.Kind.String(), "closed").Inc()
		return ErrClosed
	}
	q := &s.queues[j.Kind]
	*q = append(*q, j)
	s.m.depth.WithLabelValues(j.Kind.String()).Set(float64(len(*q)))
	s.mu.Unlock()
	s.cond.Signal()
	return nil
}

// release gives back what an admitted job held: its bytes (and its
// copy's buffer, to the pool, when it was the copy's last job) and, when
// it never ran, its CPU reservation. s.mu must be held.
func (s *Stage) release(j *Job, ran bool) {
	if !ran && s.budget != nil {
		s.budget.refund(j.reserved)
	}
	j.reserved = 0
	s.held -= j.bytes
	j.bytes = 0
	if h := j.hold; h != nil {
		j.hold, j.Segment = nil, nil
		if h.refs--; h.refs == 0 {
			s.held -= h.n
			bufpool.Put(h.buf)
			h.buf = nil
		}
	}
	s.m.held.Set(float64(s.held))
}

// Cancel sheds the queued jobs of group (their Done gets ErrCancelled)
// and returns how many there were. Jobs already running are not stopped.
func (s *Stage) Cancel(group string) int {
	s.mu.Lock()
	var shed []*Job
	for k := range s.queues {
		q := s.queues[k][:0]
		for _, j := range s.queues[k] {
			if j.Group == group {
				s.release(j, false)
				shed = append(shed, j)
			} else {
				q = append(q, j)
			}
		}
		clear(s.queues[k][len(q):])
		s.queues[k] = q
		s.m.depth.WithLabelValues(Kind(k).String()).Set(float64(len(q)))
	}
	s.mu.Unlock()
	for _, j := range shed {
		s.m.shed.WithLabelValues(j.Kind.String(), "cancelled").Inc()
		j.Done(Result{Kind: j.Kind, Err: ErrCancelled})
	}
	return len(shed)
}

// Close sheds what is still queued (Done gets ErrClosed: at shutdown,
// derived work is not worth holding the server up for, and every shed job
// becomes a gap record a reviewer can fill on demand), waits for the jobs
// already running, and ends every worker. Later TrySubmits return
// ErrClosed. Close is idempotent.
func (s *Stage) Close() {
	s.mu.Lock()
	var shed []*Job
	if !s.closed {
		s.closed = true
		for k := range s.queues {
			for _, j := range s.queues[k] {
				s.release(j, false)
			}
			shed = append(shed, s.queues[k]...)
			s.queues[k] = nil
			s.m.depth.WithLabelValues(Kind(k).String()).Set(0)
		}
	}
	s.mu.Unlock()
	s.cond.Broadcast()
	for _, j := range shed {
		s.m.shed.WithLabelValues(j.Kind.String(), "closed").Inc()
		j.Done(Result{Kind: j.Kind, Err: ErrClosed})
	}
	s.wg.Wait()
	s.cancel()
}

// next waits for a job, thumbnails first; nil once closed.
func (s *Stage) next() *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			return nil
		}
		for k := range s.queues {
			if q := s.queues[k]; len(q) > 0 {
				j := q[0]
				q[0] = nil
				s.queues[k] = q[1:]
				s.m.depth.WithLabelValues(Kind(k).String()).Set(float64(len(q) - 1))
				return j
			}
		}
		s.cond.Wait()
	}
}

func (s *Stage) worker() {
	defer s.wg.Done()
	// The thread stays locked to this goroutine until it ends, so the Go
	// runtime then destroys it instead of handing a niced thread to other
	// goroutines (ingest among them). FFmpeg's own codec threads, created
	// from this one, inherit its niceness.
	runtime.LockOSThread()
	if err := lowerPriority(s.cfg.Nice); err != nil {
		s.log.Warn("transcode worker keeps normal priority", "err", err)
	}
	for j := s.next(); j != nil; j = s.next() {
		s.run(j)
	}
}

// lowerPriority sets the calling thread's niceness to at least nice; it
// never raises priority (an unprivileged process could not).
func lowerPriority(nice int) error {
	if nice < 0 {
		return nil
	}
	tid := unix.Gettid()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return fmt.Errorf("getpriority: %w", err)
	}
	// The raw system call returns 20 - nice.
	if cur := 20 - prio; cur >= nice {
		return nil
	}
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
		return fmt.Errorf("setpriority %d: %w", nice, err)
	}
	return nil
}

// ThreadNice returns the calling thread's niceness (for tests and
// diagnostics).
func ThreadNice() (int, error) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		return 0, err
	}
	return 20 - prio, nil
}

func (s *Stage) run(j *Job) {
	start, cpu0 := time.Now(), threadCPU()
	res := s.render(j)
	cpu := (threadCPU() - cpu0).Seconds()
	kind := j.Kind.String()
	s.mu.Lock()
	if s.budget != nil {
		s.budget.charge(j.Kind, j.reserved, cpu, s.cfg.Now())
	}
	s.release(j, true)
	s.mu.Unlock()
	s.m.seconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	s.m.cpu.WithLabelValues(kind).Add(cpu)
	if res.Err != nil {
		s.m.errors.WithLabelValues(kind).Inc()
	} else {
		s.m.done.WithLabelValues(kind).Inc()
	}
	j.Done(res)
}

// threadCPU is the CPU time (user and system) the calling OS thread has
// used; the workers are locked to theirs, so the difference across a job
// is the job's own CPU, whatever else the process does meanwhile.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// render calls the renderer, turning a panic (FFmpeg bindings fed a
// hostile segment) into an error so one bad segment costs one rendition,
// not the process.
func (s *Stage) render(j *Job) (res Result) {
	res.Kind = j.Kind
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("transcode renderer panicked", "kind", j.Kind, "panic", v, "stack", string(debug.Stack()))
			res = Result{Kind: j.Kind, Err: fmt.Errorf("%s renderer panicked: %v", j.Kind, v)}
		}
	}()
	var err error
	switch j.Kind {
	case Thumb:
		res.Data, err = s.r.Thumbnail(s.ctx, j.Init, j.Segment)
	case Proxy:
		res.Init, res.Data, err = s.r.Proxy(s.ctx, j.Init, j.Segment)
	}
	switch {
	case err != nil:
		res = Result{Kind: j.Kind, Err: fmt.Errorf("%s: %w", j.Kind, err)}
	case len(res.Data) == 0 || (j.Kind == Proxy && len(res.Init) == 0):
		res = Result{Kind: j.Kind, Err: fmt.Errorf("%s: renderer returned nothing", j.Kind)}
	}
	return res
}

// metrics are the stage's collectors, camvault_transcode_*.
type metrics struct {
	done, errors *prometheus.CounterVec
	shed         *prometheus.CounterVec
	depth        *prometheus.GaugeVec
	seconds      *prometheus.HistogramVec
	cpu          *prometheus.CounterVec
	held         prometheus.Gauge
	copied       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "camvault", "transcode"
	kind := []string{"kind"}
	m := &metrics{
		done: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "jobs_total",
			Help: "Derived renditions made."}, kind),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Derived renditions that failed (undecodable segment, renderer error or panic)."}, kind),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "shed_total",
			Help: "Derived renditions not made: refused (queue full in items or bytes, CPU budget used up), or dropped from the queue at session end or shutdown."},
			[]string{"kind", "reason"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_depth",
			Help: "Jobs waiting for a transcode worker."}, kind),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "job_seconds",
			Help:    "Time a worker spent on one rendition.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12), // 5 ms (a thumbnail) to ~10 s
		}, kind),
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "cpu_seconds_total",
			Help: "CPU time the workers spent on renditions, measured on their threads (what the CPU budget is charged)."}, kind),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "queue_bytes",
			Help: "Bytes of segment copies held for jobs waiting or running (bounded by the queue's byte limit)."}),
		copied: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "copied_bytes_total",
			Help: "Bytes of plaintext copied for derived work: only segments the stage took are copied."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.done, m.errors, m.shed, m.depth, m.seconds, m.cpu, m.held, m.copied} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("transcode: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
