package transcode

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fake is an in-memory Renderer: it burns CPU for Work (or waits on Gate
// when set), then returns bytes derived from the segment, or fails the
// way Fail says.
type fake struct {
	Work time.Duration
	Gate chan struct{}
	Fail func(segment []byte) (panics bool, err error)

	mu      sync.Mutex
	started chan string // receives "kind:segment" as each call starts
	nice    []int
}

func (f *fake) call(kind string, segment []byte) error {
	if n, err := ThreadNice(); err == nil {
		f.mu.Lock()
		f.nice = append(f.nice, n)
		f.mu.Unlock()
	}
	if f.started != nil {
		f.started <- kind + ":" + string(segment)
	}
	if f.Gate != nil {
		<-f.Gate
	}
	for end := time.Now().Add(f.Work); time.Now().Before(end); {
	}
	if f.Fail != nil {
		if panics, err := f.Fail(segment); panics {
			panic("corrupt frame in " + string(segment))
		} else if err != nil {
			return err
		}
	}
	return nil
}

func (f *fake) Proxy(_ context.Context, init, segment []byte) ([]byte, []byte, error) {
	if err := f.call("proxy", segment); err != nil {
		return nil, nil, err
	}
	return []byte("pinit:" + string(init)), []byte("proxy:" + string(segment)), nil
}

func (f *fake) Thumbnail(_ context.Context, _, segment []byte) ([]byte, error) {
	if err := f.call("thumb", segment); err != nil {
		return nil, err
	}
	return []byte("jpeg:" + string(segment)), nil
}

// results collects Done calls.
type results struct {
	mu  sync.Mutex
	got []string
	wg  sync.WaitGroup
}

func (r *results) job(kind Kind, group, seg string) *Job {
	r.wg.Add(1)
	return &Job{Kind: kind, Group: group, Init: []byte("init"), Segment: []byte(seg), Done: func(res Result) {
		defer r.wg.Done()
		s := string(res.Data)
		if res.Err != nil {
			s = kind.String() + ":" + seg + " err " + res.Err.Error()
		}
		r.mu.Lock()
		r.got = append(r.got, s)
		r.mu.Unlock()
	}}
}

func (r *results) submitted(err error) {
	if err != nil {
		r.wg.Done() // Done is never called for a refused job
	}
}

func (r *results) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func newStage(t *testing.T, cfg Config, r Renderer) (*Stage, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(cfg, r, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, reg
}

// count reads a counter's or gauge's value.
func count(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// series counts a collector's series.
func series(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// TestShedsWhenFullWithoutBlocking: with every worker busy and the proxy
// queue full, TrySubmit refuses at once (no waiting for a worker), the
// thumbnail queue still takes work, and the counters add up.
func TestShedsWhenFullWithoutBlocking(t *testing.T) {
	f := &fake{Gate: make(chan struct{}), started: make(chan string, 16)}
	s, _ := newStage(t, Config{Workers: 2, Queue: 2, ThumbQueue: 1}, f)
	var r results
	for i := range 4 {
		r.submitted(s.TrySubmit(r.job(Proxy, "a", fmt.Sprint(i))))
		if i == 1 { // both workers hold a job before the queue fills
			<-f.started
			<-f.started
		}
	}
	var worst time.Duration
	for i := range 200 {
		j := r.job(Proxy, "a", fmt.Sprint("x", i))
		start := time.Now()
		err := s.TrySubmit(j)
		worst = max(worst, time.Since(start))
		r.submitted(err)
		if !errors.Is(err, ErrQueueFull) || !IsShed(err) {
			t.Fatalf("submit into a full queue: %v", err)
		}
	}
	// Under -race on a shared 2-core machine, a lock and a counter take
	// microseconds; a TrySubmit that waited for a worker would take
	// forever (the workers are blocked on the gate).
	if worst > 50*time.Millisecond {
		t.Fatalf("TrySubmit into a full queue took %v", worst)
	}
	r.submitted(s.TrySubmit(r.job(Thumb, "a", "t0")))
	if err := s.TrySubmit(r.job(Thumb, "a", "t1")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second thumbnail into a queue of 1: %v", err)
	} else {
		r.submitted(err)
	}
	if d := count(t, s.m.depth.WithLabelValues("proxy")); d != 2 {
		t.Fatalf("proxy queue depth %v, want 2", d)
	}
	close(f.Gate)
	r.wg.Wait()
	got := r.list()
	if len(got) != 5 {
		t.Fatalf("Done called %d times, want 5: %v", len(got), got)
	}
	for _, g := range got {
		if !strings.HasPrefix(g, "proxy:") && !strings.HasPrefix(g, "jpeg:") {
			t.Fatalf("unexpected result %q", g)
		}
	}
	for _, c := range []struct {
		c    prometheus.Metric
		want float64
	}{
		{s.m.done.WithLabelValues("proxy"), 4},
		{s.m.done.WithLabelValues("thumb"), 1},
		{s.m.shed.WithLabelValues("proxy", "queue_full"), 200},
		{s.m.shed.WithLabelValues("thumb", "queue_full"), 1},
		{s.m.errors.WithLabelValues("proxy"), 0},
		{s.m.depth.WithLabelValues("proxy"), 0},
	} {
		if got := count(t, c.c); got != c.want {
			t.Errorf("%v = %v, want %v", c.c, got, c.want)
		}
	}
	if n := series(s.m.seconds); n != 2 {
		t.Errorf("job_seconds has %d series, want 2", n)
	}
}

// TestThumbnailsBeforeProxies: a waiting thumbnail overtakes waiting
// proxies.
func TestThumbnailsBeforeProxies(t *testing.T) {
	f := &fake{Gate: make(chan struct{}), started: make(chan string, 16)}
	s, _ := newStage(t, Config{Workers: 1, Queue: 4}, f)
	var r results
	r.submitted(s.TrySubmit(r.job(Proxy, "a", "0")))
	<-f.started
	r.submitted(s.TrySubmit(r.job(Proxy, "a", "1")))
	r.submitted(s.TrySubmit(r.job(Thumb, "a", "1")))
	close(f.Gate)
	r.wg.Wait()
	if got := strings.Join(r.list(), " "); got != "proxy:0 jpeg:1 proxy:1" {
		t.Fatalf("order %q", got)
	}
}

// TestRendererFailuresAreResults: an error or a panic in the renderer
// (FFmpeg on a corrupt frame) reaches Done as an error for that job only;
// the worker goes on.
func TestRendererFailuresAreResults(t *testing.T) {
	f := &fake{Fail: func(seg []byte) (bool, error) {
		switch string(seg) {
		case "bad":
			return false, errors.New("decode: invalid data found when processing input")
		case "evil":
			return true, nil
		}
		return false, nil
	}}
	s, _ := newStage(t, Config{Workers: 1, Queue: 8}, f)
	var r results
	for _, seg := range []string{"bad", "evil", "good"} {
		r.submitted(s.TrySubmit(r.job(Proxy, "a", seg)))
	}
	r.wg.Wait()
	got := r.list()
	if len(got) != 3 || !strings.Contains(got[0], "err proxy: decode: invalid data") ||
		!strings.Contains(got[1], "err proxy renderer panicked: corrupt frame in evil") || got[2] != "proxy:good" {
		t.Fatalf("results %q", got)
	}
	for _, g := range got[:2] {
		if strings.Contains(g, "shed") {
			t.Fatalf("a failure reported as shed: %q", g)
		}
	}
	if e, d := count(t, s.m.errors.WithLabelValues("proxy")), count(t, s.m.done.WithLabelValues("proxy")); e != 2 || d != 1 {
		t.Fatalf("errors %v done %v", e, d)
	}
}

// TestRendererEmptyOutput: a renderer that returns nothing is an error,
// not an empty chunk.
func TestRendererEmptyOutput(t *testing.T) {
	s, _ := newStage(t, Config{Workers: 1}, emptyRenderer{})
	done := make(chan Result, 1)
	if err := s.TrySubmit(&Job{Kind: Proxy, Segment: []byte("s"), Done: func(r Result) { done <- r }}); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Err == nil || !strings.Contains(r.Err.Error(), "returned nothing") {
		t.Fatalf("result %+v", r)
	}
}

type emptyRenderer struct{}

func (emptyRenderer) Proxy(context.Context, []byte, []byte) ([]byte, []byte, error) {
	return []byte("init"), nil, nil
}
func (emptyRenderer) Thumbnail(context.Context, []byte, []byte) ([]byte, error) { return nil, nil }

// TestCancelShedsOnlyTheGroup: at a session's end its queued jobs are shed
// with ErrCancelled, the running one finishes, other sessions' jobs stay.
func TestCancelShedsOnlyTheGroup(t *testing.T) {
	f := &fake{Gate: make(chan struct{}), started: make(chan string, 16)}
	s, _ := newStage(t, Config{Workers: 1, Queue: 8}, f)
	var r results
	r.submitted(s.TrySubmit(r.job(Proxy, "a", "a0")))
	<-f.started
	for _, j := range []*Job{r.job(Proxy, "a", "a1"), r.job(Thumb, "a", "a1"), r.job(Proxy, "b", "b1")} {
		r.submitted(s.TrySubmit(j))
	}
	if n := s.Cancel("a"); n != 2 {
		t.Fatalf("cancelled %d jobs, want 2", n)
	}
	if got := r.list(); len(got) != 2 || !strings.Contains(got[0], ErrCancelled.Error()) || !strings.Contains(got[1], ErrCancelled.Error()) {
		t.Fatalf("after cancel %q", got)
	}
	close(f.Gate)
	r.wg.Wait()
	if got := r.list(); len(got) != 4 || got[2] != "proxy:a0" || got[3] != "proxy:b1" {
		t.Fatalf("results %q", got)
	}
	if n := count(t, s.m.shed.WithLabelValues("proxy", "cancelled")); n != 1 {
		t.Fatalf("cancelled proxies counted %v", n)
	}
}

// TestCloseEndsEveryGoroutine: Close sheds the queue, lets the running
// jobs finish, and leaves no goroutine behind.
func TestCloseEndsEveryGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	f := &fake{Gate: make(chan struct{}), started: make(chan string, 16)}
	s, err := New(Config{Workers: 3, Queue: 8}, f, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var r results
	for i := range 6 {
		r.submitted(s.TrySubmit(r.job(Proxy, "a", fmt.Sprint(i))))
	}
	for range 3 {
		<-f.started
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while jobs were running")
	case <-time.After(50 * time.Millisecond):
	}
	close(f.Gate)
	<-closed
	r.wg.Wait()
	shed, made := 0, 0
	for _, g := range r.list() {
		switch {
		case strings.Contains(g, ErrClosed.Error()):
			shed++
		case strings.HasPrefix(g, "proxy:"):
			made++
		}
	}
	if shed != 3 || made != 3 {
		t.Fatalf("after Close: %d shed, %d made: %q", shed, made, r.list())
	}
	if err := s.TrySubmit(&Job{Kind: Thumb, Done: func(Result) { t.Error("Done after Close") }}); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after Close: %v", err)
	}
	s.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

// TestWorkersRunNiced: the renderer runs on threads below the caller's
// priority.
func TestWorkersRunNiced(t *testing.T) {
	runtime.LockOSThread()
	mine, err := ThreadNice()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{Work: time.Millisecond}
	s, _ := newStage(t, Config{Workers: 2}, f)
	var r results
	for i := range 4 {
		r.submitted(s.TrySubmit(r.job(Proxy, "a", fmt.Sprint(i))))
	}
	r.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nice) != 4 {
		t.Fatalf("%d niceness readings", len(f.nice))
	}
	for _, n := range f.nice {
		if n < 10 || n < mine {
			t.Fatalf("worker thread nice %d (caller %d), want at least 10", n, mine)
		}
	}
}

func TestDefaultsAndRejects(t *testing.T) {
	s, _ := newStage(t, Config{}, &fake{})
	if want := max(runtime.NumCPU()-1, 1); s.Workers() != want || s.cfg.Queue != 4*want || s.cfg.ThumbQueue != 16*want {
		t.Fatalf("defaults %+v, want %d workers", s.cfg, want)
	}
	if _, err := New(Config{}, nil, nil, nil); err == nil {
		t.Fatal("no renderer accepted")
	}
	for _, j := range []*Job{nil, {Kind: Proxy}, {Kind: 7, Done: func(Result) {}}} {
		if err := s.TrySubmit(j); err == nil || IsShed(err) {
			t.Fatalf("malformed job %+v: %v", j, err)
		}
	}
	reg := prometheus.NewRegistry()
	s2, err := New(Config{Workers: 1}, &fake{}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := New(Config{Workers: 1}, &fake{}, reg, nil); err == nil {
		t.Fatal("second stage on one registry: metrics registered twice without error")
	}
}
