package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type val struct {
	key string
	i   int
}

func identity[T any](_ context.Context, v T) (T, error) { return v, nil }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkGoroutines fails if the goroutine count does not come back down to
// before: every worker must end with its run.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitRun(t *testing.T, r *Run) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- r.Wait() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run.Wait did not return")
		return nil
	}
}

// metricValue reads one series of a gathered family; ok is false when the
// series does not exist.
func metricValue(t *testing.T, reg *prometheus.Registry, name, stage string) (v float64, ok bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasStage(m, stage) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasStage(m *dto.Metric, stage string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == "stage" && l.GetValue() == stage {
			return true
		}
	}
	return false
}

func mustMetric(t *testing.T, reg *prometheus.Registry, name, stage string, want float64) {
	t.Helper()
	got, ok := metricValue(t, reg, name, stage)
	if !ok {
		t.Fatalf("%s{stage=%q}: no such series", name, stage)
	}
	if got != want {
		t.Fatalf("%s{stage=%q} = %v, want %v", name, stage, got, want)
	}
}

func TestOrderedPerKeyAfterParallelStage(t *testing.T) {
	const keys, perKey = 64, 80
	ctx := t.Context()
	src := NewSource[val]("in", 32, nil)
	var mu sync.Mutex
	finished := make(map[string]int) // highest item of each key the jitter stage finished
	inversions := 0
	jittered := Then(ctx, From(src), Stage[val, val]{
		Name: "jitter", Workers: 8,
		Fn: func(_ context.Context, v val) (val, error) {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			mu.Lock()
			if last, ok := finished[v.key]; ok && last > v.i {
				inversions++
			} else {
				finished[v.key] = v.i
			}
			mu.Unlock()
			return v, nil
		},
	}, 16)
	got := make(map[string][]int) // written only by the ordered stage's single worker
	ordered := Then(ctx, jittered, Stage[val, val]{
		Name: "ordered", Ordered: true,
		Fn: func(_ context.Context, v val) (val, error) {
			got[v.key] = append(got[v.key], v.i)
			return v, nil
		},
	}, 16)
	var sunk atomic.Int64
	run := Sink(ctx, ordered, Stage[val, struct{}]{
		Name: "count", Workers: 4,
		Fn: func(context.Context, val) (struct{}, error) { sunk.Add(1); return struct{}{}, nil },
	})

	// One producer per group of keys: per-key order is the order in which
	// its one producer submitted. Bursts of one key make the jitter stage
	// work on several items of a key at once, so it does reorder them.
	const burst = 5
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i0 := 0; i0 < perKey; i0 += burst {
				for k := g; k < keys; k += 4 {
					key := fmt.Sprint("k", k)
					for i := i0; i < i0+burst; i++ {
						if err := src.Submit(ctx, key, val{key, i}); err != nil {
							t.Errorf("submit: %v", err)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if n := sunk.Load(); n != keys*perKey {
		t.Fatalf("sink saw %d items, want %d", n, keys*perKey)
	}
	if inversions == 0 {
		t.Fatal("the parallel stage never reordered a key: the test proves nothing")
	}
	t.Logf("%d items finished the parallel stage after a later item of their key", inversions)
	if len(got) != keys {
		t.Fatalf("ordered stage saw %d keys, want %d", len(got), keys)
	}
	for k, seq := range got {
		if len(seq) != perKey {
			t.Fatalf("key %s: %d items, want %d", k, len(seq), perKey)
		}
		for i, v := range seq {
			if v != i {
				t.Fatalf("key %s: position %d holds item %d; order %v", k, i, v, seq)
			}
		}
	}
}

func TestSlowKeyDoesNotHoldBackOtherKeys(t *testing.T) {
	ctx := t.Context()
	gate := make(chan struct{})
	src := NewSource[val]("in", 64, nil)
	p := Then(ctx, From(src), Stage[val, val]{
		Name: "work", Workers: 4,
		Fn: func(_ context.Context, v val) (val, error) {
			if v.key == "slow" && v.i == 0 {
				<-gate
			}
			return v, nil
		},
	}, 64)
	var mu sync.Mutex
	committed := make(map[string][]int)
	run := Sink(ctx, p, Stage[val, struct{}]{
		Name: "commit", Ordered: true,
		Fn: func(_ context.Context, v val) (struct{}, error) {
			mu.Lock()
			committed[v.key] = append(committed[v.key], v.i)
			mu.Unlock()
			return struct{}{}, nil
		},
	})
	snapshot := func(k string) []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), committed[k]...)
	}
	for i := range 2 {
		if err := src.Submit(ctx, "slow", val{"slow", i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := src.Submit(ctx, "fast", val{"fast", i}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "fast key committed", func() bool { return len(snapshot("fast")) == 20 })
	if s := snapshot("slow"); len(s) != 0 {
		t.Fatalf("slow key committed %v before its first item finished", s)
	}
	close(gate)
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatal(err)
	}
	if s := snapshot("slow"); fmt.Sprint(s) != "[0 1]" {
		t.Fatalf("slow key committed %v, want [0 1]", s)
	}
}

func TestBackpressureBoundsInFlight(t *testing.T) {
	const srcQ, workers, midQ, total = 4, 2, 3, 100
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "t")
	ctx := t.Context()
	gate := make(chan struct{})
	src := NewSource[int]("src", srcQ, m)
	mid := Then(ctx, From(src), Stage[int, int]{Name: "mid", Workers: workers, Fn: identity[int]}, midQ)
	var sunk atomic.Int64
	run := Sink(ctx, mid, Stage[int, struct{}]{
		Name: "sink",
		Fn: func(context.Context, int) (struct{}, error) {
			<-gate
			sunk.Add(1)
			return struct{}{}, nil
		},
	})

	var accepted atomic.Int64
	prodDone := make(chan error, 1)
	go func() {
		for i := range total {
			if err := src.Submit(ctx, "k", i); err != nil {
				prodDone <- err
				return
			}
			accepted.Add(1)
		}
		prodDone <- nil
	}()

	// Everything that can hold an item is full: the source queue, each
	// worker of mid (blocked handing on), mid's queue, and the sink's Fn.
	const bound = srcQ + workers + midQ + 1
	waitFor(t, "queues to fill", func() bool { return accepted.Load() >= bound })
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != bound {
		t.Fatalf("accepted %d items with a stalled sink, want exactly %d", n, bound)
	}
	select {
	case err := <-prodDone:
		t.Fatalf("producer finished (%v) although the sink is stalled", err)
	default:
	}
	if src.TrySubmit("other", -1) {
		t.Fatal("TrySubmit accepted an item into a full source")
	}
	mustMetric(t, reg, "t_pipeline_in_flight", "src", bound)
	mustMetric(t, reg, "t_pipeline_in_flight", "mid", workers)
	mustMetric(t, reg, "t_pipeline_in_flight", "sink", 1)
	mustMetric(t, reg, "t_pipeline_queue_depth", "mid", srcQ) // mid's input is the source queue
	mustMetric(t, reg, "t_pipeline_queue_depth", "sink", midQ)
	mustMetric(t, reg, "t_pipeline_rejected_total", "src", 1)
	// The producer blocked on the full source shows, and so does the
	// time it has waited.
	mustMetric(t, reg, "t_pipeline_blocked", "src", 1)

	close(gate)
	if err := <-prodDone; err != nil {
		t.Fatalf("producer: %v", err)
	}
	mustMetric(t, reg, "t_pipeline_blocked", "src", 0)
	if v, _ := metricValue(t, reg, "t_pipeline_blocked_seconds_total", "src"); v < 0.05 {
		t.Fatalf("blocked %v s, the producer waited at least 50 ms", v)
	}
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatal(err)
	}
	if n := sunk.Load(); n != total {
		t.Fatalf("sink saw %d items, want %d", n, total)
	}
	mustMetric(t, reg, "t_pipeline_in_flight", "src", 0)
	if _, ok := metricValue(t, reg, "t_pipeline_queue_depth", "mid"); ok {
		t.Fatal("queue_depth of a finished run is still reported")
	}
}

// TestBackoffIsCappedExponentialWithJitter: each delay lies in [d/2, d]
// for d = Base doubled per retry up to Max, and the delays vary.
func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for n, d := range []time.Duration{10, 20, 40, 80, 80, 80} {
		d *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 50 {
			got := b.Delay(n)
			if got < d/2 || got > d {
				t.Fatalf("delay %d = %v, want within [%v, %v]", n, got, d/2, d)
			}
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Fatalf("delay %d never varies: no jitter", n)
		}
	}
	if d := (Backoff{}).Delay(100); d < time.Second || d > 2*time.Second {
		t.Fatalf("default delay after many retries %v, want within the 2 s cap", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := (Backoff{Base: time.Hour}).Wait(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait on a cancelled context: %v", err)
	}
}

func TestCloseDrainsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx := t.Context()
	src := NewSource[int]("in", 8, nil)
	p := Then(ctx, From(src), Stage[int, int]{Name: "a", Workers: 3, Fn: func(_ context.Context, v int) (int, error) {
		time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
		return v * 2, nil
	}}, 4)
	p = Then(ctx, p, Stage[int, int]{Name: "b", Ordered: true, Fn: identity[int]}, 0)
	var mu sync.Mutex
	seen := make(map[int]int)
	run := Sink(ctx, p, Stage[int, struct{}]{Name: "sink", Workers: 2, Fn: func(_ context.Context, v int) (struct{}, error) {
		mu.Lock()
		seen[v]++
		mu.Unlock()
		return struct{}{}, nil
	}})
	const n = 1000
	for i := range n {
		if err := src.Submit(ctx, fmt.Sprint(i%7), i); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	src.Close() // idempotent
	if err := waitRun(t, run); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := run.Wait(); err != nil {
		t.Fatalf("second Wait: %v", err)
	}
	if len(seen) != n {
		t.Fatalf("sink saw %d distinct items, want %d", len(seen), n)
	}
	for i := range n {
		if seen[i*2] != 1 {
			t.Fatalf("item %d reached the sink %d times", i, seen[i*2])
		}
	}
	if err := src.Submit(ctx, "x", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
	if src.TrySubmit("x", 1) {
		t.Fatal("TrySubmit after Close accepted an item")
	}
	checkGoroutines(t, before)
}

func TestCancelStopsPromptly(t *testing.T) {
	before := runtime.NumGoroutine()
	cause := errors.New("node shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	src := NewSource[int]("in", 2, nil)
	p := Then(ctx, From(src), Stage[int, int]{Name: "a", Workers: 4, Fn: identity[int]}, 2)
	p = Then(ctx, p, Stage[int, int]{Name: "b", Ordered: true, Fn: identity[int]}, 2)
	started := make(chan struct{}, 1)
	run := Sink(ctx, p, Stage[int, struct{}]{Name: "sink", Fn: func(ctx context.Context, _ int) (struct{}, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done() // a sink stuck on a dead store, until shutdown
		return struct{}{}, ctx.Err()
	}})
	// A producer that does not watch ctx itself, blocked on the full queue.
	prodErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := src.Submit(context.Background(), fmt.Sprint(i%3), i); err != nil {
				prodErr <- err
				return
			}
		}
	}()
	<-started
	time.Sleep(20 * time.Millisecond) // let the queues fill
	t0 := time.Now()
	cancel(cause)
	if err := waitRun(t, run); !errors.Is(err, cause) {
		t.Fatalf("Wait = %v, want the cancel cause", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Wait took %v after cancel", d)
	}
	select {
	case err := <-prodErr:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Submit returned %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Submit still blocked after the run was cancelled")
	}
	checkGoroutines(t, before)
}

func TestCancelledContextBeforeStart(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	src := NewSource[int]("in", 2, nil)
	run := Sink(ctx, From(src), Stage[int, struct{}]{Name: "sink", Fn: func(context.Context, int) (struct{}, error) {
		return struct{}{}, nil
	}})
	if err := waitRun(t, run); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if err := src.Submit(ctx, "k", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit with a done ctx = %v", err)
	}
	checkGoroutines(t, before)
}

type event struct {
	seq   uint64
	i     int // -1 for a gap
	stage string
	err   error
}

func TestFailedItemsFlowToOnErrorInOrder(t *testing.T) {
	const keys, perKey = 8, 50
	boom := errors.New("boom")
	reg := prometheus.NewRegistry()
	ctx := t.Context()
	src := NewSource[val]("in", 16, NewMetrics(reg, "t"))
	var sealFailures atomic.Int64
	sealed := Then(ctx, From(src), Stage[val, val]{
		Name: "seal", Workers: 4,
		Fn: func(_ context.Context, v val) (val, error) {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			if v.i%5 == 3 {
				return val{}, fmt.Errorf("seal %s/%d: %w", v.key, v.i, boom)
			}
			return v, nil
		},
		OnError: func(string, uint64, string, error) { sealFailures.Add(1) },
	}, 8)
	var storeCalls atomic.Int64
	stored := Then(ctx, sealed, Stage[val, val]{
		Name: "store", Workers: 4,
		Fn: func(_ context.Context, v val) (val, error) {
			storeCalls.Add(1)
			if v.key == "" {
				return v, errors.New("store got a failed item's zero value")
			}
			return v, nil
		},
	}, 8)
	events := make(map[string][]event) // only the ordered sink's worker writes
	run := Sink(ctx, stored, Stage[val, struct{}]{
		Name: "commit", Ordered: true,
		Fn: func(_ context.Context, v val) (struct{}, error) {
			events[v.key] = append(events[v.key], event{i: v.i})
			if v.i == perKey-1 {
				return struct{}{}, errors.New("catalog full")
			}
			return struct{}{}, nil
		},
		OnError: func(key string, seq uint64, stage string, err error) {
			if stage == "commit" { // its own failure: Fn already recorded the item
				return
			}
			events[key] = append(events[key], event{seq: seq, i: -1, stage: stage, err: err})
		},
	})
	for i0 := 0; i0 < perKey; i0 += 10 {
		for k := range keys {
			for i := i0; i < i0+10; i++ { // bursts, so that seal reorders a key
				if err := src.Submit(ctx, fmt.Sprint("k", k), val{fmt.Sprint("k", k), i}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatalf("Wait: %v", err)
	}

	failedPerKey := 0
	for i := range perKey {
		if i%5 == 3 {
			failedPerKey++
		}
	}
	for k := range keys {
		key := fmt.Sprint("k", k)
		ev := events[key]
		if len(ev) != perKey {
			t.Fatalf("key %s: %d events, want %d: %v", key, len(ev), perKey, ev)
		}
		for i, e := range ev {
			if i%5 == 3 {
				if e.i != -1 || e.seq != uint64(i) || e.stage != "seal" || !errors.Is(e.err, boom) {
					t.Fatalf("key %s position %d: %+v, want the seal gap of seq %d", key, i, e, i)
				}
			} else if e.i != i {
				t.Fatalf("key %s position %d: %+v, want item %d", key, i, e, i)
			}
		}
	}
	wantFailed := int64(keys * failedPerKey)
	if n := sealFailures.Load(); n != wantFailed {
		t.Fatalf("seal OnError called %d times, want %d", n, wantFailed)
	}
	if n := storeCalls.Load(); n != keys*perKey-wantFailed {
		t.Fatalf("store Fn ran %d times, want %d (never on failed items)", n, keys*perKey-wantFailed)
	}
	mustMetric(t, reg, "t_pipeline_errors_total", "seal", float64(wantFailed))
	mustMetric(t, reg, "t_pipeline_errors_total", "store", 0)
	mustMetric(t, reg, "t_pipeline_errors_total", "commit", keys)
	mustMetric(t, reg, "t_pipeline_items_total", "commit", keys*perKey)
}

type blob struct{ n int }

func (b *blob) Size() int { return b.n }

func TestPanicsBecomeItemErrors(t *testing.T) {
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	src := NewSource[int]("in", 4, NewMetrics(reg, "t"))
	sentinel := errors.New("sentinel")
	p := Then(ctx, From(src), Stage[int, *blob]{
		Name: "work", Workers: 2,
		Fn: func(_ context.Context, v int) (*blob, error) {
			switch v {
			case 3:
				panic("bad frame")
			case 5:
				panic(fmt.Errorf("wrapped: %w", sentinel))
			case 7:
				return nil, nil // Size on a nil *blob panics: must be caught too
			case 8:
				return &blob{-10}, nil // hostile size: must not panic the counter
			}
			return &blob{100}, nil
		},
	}, 4)
	var mu sync.Mutex
	failed := make(map[uint64]error)
	var ok []int
	run := Sink(ctx, p, Stage[*blob, struct{}]{
		Name: "sink", Ordered: true,
		Fn: func(_ context.Context, b *blob) (struct{}, error) {
			mu.Lock()
			ok = append(ok, b.n)
			mu.Unlock()
			return struct{}{}, nil
		},
		OnError: func(_ string, seq uint64, _ string, err error) {
			mu.Lock()
			failed[seq] = err
			mu.Unlock()
			panic("the callback itself misbehaves")
		},
	})
	for i := range 10 {
		if err := src.Submit(ctx, "k", i); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if len(failed) != 3 {
		t.Fatalf("failed items %v, want seq 3, 5 and 7", failed)
	}
	for _, seq := range []uint64{3, 5, 7} {
		var pe *PanicError
		if !errors.As(failed[seq], &pe) || len(pe.Stack) == 0 {
			t.Fatalf("seq %d: error %v is not a *PanicError with a stack", seq, failed[seq])
		}
	}
	if !errors.Is(failed[5], sentinel) {
		t.Fatalf("panic with an error value does not unwrap to it: %v", failed[5])
	}
	if len(ok) != 7 {
		t.Fatalf("sink got %v, want 7 good items", ok)
	}
	mustMetric(t, reg, "t_pipeline_errors_total", "work", 3)
	mustMetric(t, reg, "t_pipeline_bytes_total", "work", 6*100)
}

func TestMetricsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "cv")
	if again := NewMetrics(reg, "cv"); again.items != m.items {
		t.Fatal("second NewMetrics on one registry did not reuse the collectors")
	}
	ctx := t.Context()
	src := NewSource[int]("in", 2, m)
	// Before the pipeline is wired the queue simply fills.
	if !src.TrySubmit("k", 1) || !src.TrySubmit("k", 2) {
		t.Fatal("TrySubmit refused an item into an empty queue")
	}
	if src.TrySubmit("k", 3) {
		t.Fatal("TrySubmit accepted a third item into a queue of 2")
	}
	p := Then(ctx, From(src), Stage[int, *blob]{
		Name: "work", Workers: 2,
		Fn: func(_ context.Context, v int) (*blob, error) {
			if v == 4 {
				return nil, errors.New("no")
			}
			return &blob{v * 10}, nil
		},
	}, 1)
	run := Sink(ctx, p, Stage[*blob, struct{}]{Name: "out", Fn: func(context.Context, *blob) (struct{}, error) {
		return struct{}{}, nil
	}})
	for v := 3; v <= 10; v++ {
		if err := src.Submit(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatal(err)
	}
	// 1..10 except 4: sum*10
	mustMetric(t, reg, "cv_pipeline_items_total", "in", 10)
	mustMetric(t, reg, "cv_pipeline_rejected_total", "in", 1)
	mustMetric(t, reg, "cv_pipeline_items_total", "work", 10)
	mustMetric(t, reg, "cv_pipeline_items_total", "out", 10)
	mustMetric(t, reg, "cv_pipeline_errors_total", "work", 1)
	mustMetric(t, reg, "cv_pipeline_errors_total", "out", 0)
	mustMetric(t, reg, "cv_pipeline_bytes_total", "work", (55-4)*10)
	mustMetric(t, reg, "cv_pipeline_latency_seconds", "work", 10)
	mustMetric(t, reg, "cv_pipeline_latency_seconds", "out", 9) // not called for the failed item
	for _, st := range []string{"in", "work", "out"} {
		mustMetric(t, reg, "cv_pipeline_in_flight", st, 0)
	}
}

func TestKeyStateIsReleased(t *testing.T) {
	ctx := t.Context()
	src := NewSource[int]("in", 4, nil)
	// Every item fails, so OnError reveals the sequence numbers.
	p := Then(ctx, From(src), Stage[int, int]{Name: "fail", Workers: 2, Fn: func(context.Context, int) (int, error) {
		return 0, errors.New("x")
	}}, 4)
	var mu sync.Mutex
	seqs := make(map[string][]uint64)
	run := Sink(ctx, p, Stage[int, struct{}]{
		Name: "commit", Ordered: true,
		Fn: func(context.Context, int) (struct{}, error) { return struct{}{}, nil },
		OnError: func(key string, seq uint64, _ string, _ error) {
			mu.Lock()
			seqs[key] = append(seqs[key], seq)
			mu.Unlock()
		},
	})
	idle := func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		for _, k := range src.keys {
			if k.live != 0 {
				return false
			}
		}
		return true
	}
	submit := func(key string, n int) {
		for range n {
			if err := src.Submit(ctx, key, 0); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "drain", idle)
	}
	submit("a", 3)
	submit("b", 2)
	src.Forget("a")
	submit("a", 2) // a new sequence
	submit("b", 1) // continues
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(seqs["a"], seqs["b"]); got != "[0 1 2 0 1] [0 1 2]" {
		t.Fatalf("sequences a, b = %s", got)
	}
	o := src.ordered[0].(*ordered[int])
	if len(o.keys) != 0 {
		t.Fatalf("ordered stage still holds state for %d idle keys", len(o.keys))
	}
}

func TestWiringMistakesPanic(t *testing.T) {
	ctx := t.Context()
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("ordered with 2 workers", func() {
		Then(ctx, From(NewSource[int]("s", 1, nil)), Stage[int, int]{Name: "o", Ordered: true, Workers: 2, Fn: identity[int]}, 1)
	})
	mustPanic("nil Fn", func() {
		Then(ctx, From(NewSource[int]("s", 1, nil)), Stage[int, int]{Name: "nil"}, 1)
	})
	mustPanic("From twice", func() {
		s := NewSource[int]("s", 1, nil)
		From(s)
		From(s)
	})
	// Nonsense sizes are clamped rather than refused: the source still
	// queues one item, the stage queue is unbuffered.
	src := NewSource[int]("s", -5, nil)
	if !src.TrySubmit("k", 1) || src.TrySubmit("k", 2) {
		t.Fatal("a source created with queue -5 should hold exactly one item")
	}
	p := From(src)
	next := Then(ctx, p, Stage[int, int]{Name: "a", Workers: -3, Fn: identity[int]}, -1)
	mustPanic("pipe consumed twice", func() {
		Then(ctx, p, Stage[int, int]{Name: "b", Fn: identity[int]}, 1)
	})
	var got atomic.Int64
	run := Sink(ctx, next, Stage[int, struct{}]{Name: "z", Fn: func(_ context.Context, v int) (struct{}, error) {
		got.Add(int64(v))
		return struct{}{}, nil
	}})
	if err := src.Submit(ctx, "k", 2); err != nil {
		t.Fatal(err)
	}
	src.Close()
	if err := waitRun(t, run); err != nil {
		t.Fatal(err)
	}
	if got.Load() != 3 {
		t.Fatalf("sink summed %d, want 1+2", got.Load())
	}
}

// BenchmarkThreeStages measures the engine's own cost per item: a parallel
// stage, an ordered stage and a sink, all with trivial functions.
func BenchmarkThreeStages(b *testing.B) {
	ctx := b.Context()
	src := NewSource[int]("in", 256, NewMetrics(prometheus.NewRegistry(), "b"))
	p := Then(ctx, From(src), Stage[int, int]{Name: "par", Workers: runtime.GOMAXPROCS(0), Fn: identity[int]}, 256)
	p = Then(ctx, p, Stage[int, int]{Name: "ord", Ordered: true, Fn: identity[int]}, 256)
	run := Sink(ctx, p, Stage[int, struct{}]{Name: "sink", Fn: func(context.Context, int) (struct{}, error) { return struct{}{}, nil }})
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprint("track-", i)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := src.Submit(ctx, keys[i%len(keys)], i); err != nil {
			b.Fatal(err)
		}
	}
	src.Close()
	if err := run.Wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}
