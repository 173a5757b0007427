package transcode

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"camvault/format/chunk"
	"camvault/media"
)

// burner is a Renderer that burns Cost of its thread's CPU per job (not
// wall time: on a loaded machine the two differ) and counts the
// segments it was handed, by their contents.
type burner struct {
	Cost  time.Duration
	calls atomic.Int64
	mu    sync.Mutex
	seen  map[string]int
}

func (b *burner) burn(segment []byte) {
	b.calls.Add(1)
	b.mu.Lock()
	if b.seen == nil {
		b.seen = map[string]int{}
	}
	b.seen[string(segment)]++
	b.mu.Unlock()
	for start := threadCPU(); threadCPU()-start < b.Cost; {
	}
}

func (b *burner) Proxy(_ context.Context, _, segment []byte) ([]byte, []byte, error) {
	b.burn(segment)
	return []byte("pinit"), []byte("proxy:" + string(segment)), nil
}

func (b *burner) Thumbnail(_ context.Context, _, segment []byte) ([]byte, error) {
	b.burn(segment)
	return []byte("jpeg:" + string(segment)), nil
}

func (b *burner) decoded(segment string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[segment]
}

func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBudgetBoundsCPU: offered far more work than a budget of 0.1 core
// pays for, the stage sheds the rest with ErrOverBudget and the CPU it
// uses (as the stage measures it, and as the process does) stays within
// the budget over the run, plus the bucket's depth and the one job that
// may run on credit.
func TestBudgetBoundsCPU(t *testing.T) {
	const cores, cost = 0.1, 20 * time.Millisecond
	b := &burner{Cost: cost}
	s, _ := newStage(t, Config{Workers: 2, CPU: cores, Burst: time.Second}, b)
	var made, overBudget atomic.Int64
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), processCPU(t)
	// 2 s of offers at 100 thumbnails a second: 2 cores' worth.
	for i := 0; time.Since(start) < 2*time.Second; i++ {
		wg.Add(1)
		err := s.TrySubmit(&Job{Kind: Thumb, Segment: []byte(fmt.Sprint(i)), Done: func(r Result) {
			defer wg.Done()
			if r.Err != nil {
				t.Errorf("job: %v", r.Err)
			}
			made.Add(1)
		}})
		switch {
		case errors.Is(err, ErrOverBudget) && IsShed(err):
			wg.Done()
			overBudget.Add(1)
		case err != nil:
			wg.Done()
			if !errors.Is(err, ErrQueueFull) {
				t.Fatalf("submit: %v", err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	wall, used := time.Since(start), processCPU(t)-cpu0
	charged := count(t, s.m.cpu.WithLabelValues("thumb"))
	limit := cores*wall.Seconds() + cores*1 /* depth */ + 2*cost.Seconds() /* on credit, one per worker */
	t.Logf("%v wall: %d made, %d shed over budget; stage measured %.3f CPU-s, process %.3f CPU-s, limit %.3f",
		wall, made.Load(), overBudget.Load(), charged, used.Seconds(), limit)
	if overBudget.Load() == 0 || made.Load() == 0 {
		t.Fatalf("%d made, %d shed over budget: the budget did not shed", made.Load(), overBudget.Load())
	}
	if charged > limit {
		t.Fatalf("the stage charged %.3f CPU-s, over its budget's %.3f", charged, limit)
	}
	if charged < float64(made.Load())*cost.Seconds()*0.9 {
		t.Fatalf("the stage charged %.3f CPU-s for %d jobs of %v each: the thread's CPU is not measured", charged, made.Load(), cost)
	}
	// The process did the stage's work and little else (the offers, the
	// bookkeeping), so its CPU bounds the stage's from above: a loose
	// check that no job's CPU escaped the measurement.
	if used.Seconds() > limit+0.25 {
		t.Fatalf("the process used %.3f CPU-s, over the budget's %.3f (+0.25 for the test itself)", used.Seconds(), limit)
	}
	if got := count(t, s.m.shed.WithLabelValues("thumb", "cpu_budget")); got != float64(overBudget.Load()) {
		t.Fatalf("shed_total{cpu_budget} = %v, want %d", got, overBudget.Load())
	}
}

// TestBudgetKeepsRoomForThumbnails: with the bucket below half full a
// proxy is refused while a thumbnail is still taken.
func TestBudgetKeepsRoomForThumbnails(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBudget(1, time.Second, now) // 1 CPU-s bucket, full
	b.charge(Thumb, 0, 0.6, now)        // 0.4 left
	if _, ok := b.admit(Proxy, now); ok {
		t.Fatal("proxy admitted with the bucket under half full")
	}
	if _, ok := b.admit(Thumb, now); !ok {
		t.Fatal("thumbnail refused with credit left")
	}
	b.charge(Thumb, 0.6, 1, now) // debt: -0.6
	if _, ok := b.admit(Thumb, now); ok {
		t.Fatal("thumbnail admitted in debt")
	}
	// Refilled at 1 core: 0.6 s repays the debt, 0.5 s more brings it
	// past half full.
	if _, ok := b.admit(Proxy, now.Add(1200*time.Millisecond)); !ok {
		t.Fatalf("proxy refused once the bucket refilled (tokens %.2f)", b.tokens)
	}
	if b.tokens > b.depth {
		t.Fatalf("bucket over its depth: %.2f > %.2f", b.tokens, b.depth)
	}
}

// items collects what a Session emits.
type items struct {
	mu  sync.Mutex
	got []*media.Item
}

func (c *items) emit(it *media.Item) error {
	c.mu.Lock()
	c.got = append(c.got, it)
	c.mu.Unlock()
	return nil
}

func (c *items) list() []*media.Item {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*media.Item(nil), c.got...)
}

// TestShedSegmentNeverCopiedOrDecoded: once the budget is used up, a
// segment offered to a Session is shed before anything is done with it:
// its plaintext is not copied (copied_bytes_total does not move) nor
// handed to the renderer, and each of its renditions becomes a shed gap
// record that says why.
func TestShedSegmentNeverCopiedOrDecoded(t *testing.T) {
	b := &burner{Cost: 50 * time.Millisecond}
	// A bucket of 0.05 CPU-s refilling at 0.001 core: the first
	// segment's jobs run on its credit, then nothing is paid for.
	s, _ := newStage(t, Config{Workers: 1, CPU: 0.001, Burst: 50 * time.Second}, b)
	var out items
	d := s.NewSession("ses", []byte("init"), chunk.Header{Session: "ses"}, out.emit, nil)
	d.Segment(chunk.Header{Session: "ses", Seq: 1}, []byte("seg-1"))()
	d.Wait()
	copied := count(t, s.m.copied)
	if copied != float64(len("seg-1")) || b.decoded("seg-1") == 0 {
		t.Fatalf("first segment: %v bytes copied, decoded %d times", copied, b.decoded("seg-1"))
	}
	calls := b.calls.Load()
	for i := 2; i <= 20; i++ {
		seg := fmt.Sprintf("seg-%d", i)
		d.Segment(chunk.Header{Session: "ses", Seq: uint64(i)}, []byte(seg))()
	}
	d.Wait()
	if got := count(t, s.m.copied); got != copied {
		t.Fatalf("shed segments were copied: copied_bytes_total %v, was %v", got, copied)
	}
	if n := b.calls.Load(); n != calls {
		t.Fatalf("the renderer was called %d times for shed segments", n-calls)
	}
	for i := 2; i <= 20; i++ {
		if n := b.decoded(fmt.Sprintf("seg-%d", i)); n != 0 {
			t.Fatalf("shed segment %d decoded %d times", i, n)
		}
	}
	gaps := 0
	for _, it := range out.list() {
		if it.Header.Seq < 2 {
			continue
		}
		if it.Kind != media.ItemGap || !it.Shed || !strings.Contains(it.Note, "CPU budget") {
			t.Fatalf("shed segment %d gave %+v, want a shed gap record naming the budget", it.Header.Seq, it)
		}
		gaps++
	}
	if gaps != 2*19 {
		t.Fatalf("%d gap records for 19 shed segments, want 38", gaps)
	}
	if h := count(t, s.m.held); h != 0 {
		t.Fatalf("%v bytes still held after every job finished", h)
	}
}

// TestQueueBytesLimit: the queue refuses a job whose segment would take
// the bytes held (waiting and running) past QueueBytes, whatever room it
// has in items; a thumbnail and a proxy of one segment share one copy and
// count it once; and the bytes are given back as jobs finish.
func TestQueueBytesLimit(t *testing.T) {
	f := &fake{Gate: make(chan struct{}), started: make(chan string, 16)}
	s, _ := newStage(t, Config{Workers: 1, Queue: 100, ThumbQueue: 100, QueueBytes: 10}, f)
	var r results
	r.submitted(s.TrySubmit(r.job(Proxy, "a", "aaaa"))) // running: still held
	<-f.started
	r.submitted(s.TrySubmit(r.job(Proxy, "a", "bbbb"))) // 8 bytes held
	err := s.TrySubmit(r.job(Proxy, "a", "cccc"))
	r.submitted(err)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("a job past the byte limit: %v, want ErrQueueFull", err)
	}
	if got := count(t, s.m.shed.WithLabelValues("proxy", "queue_bytes")); got != 1 {
		t.Fatalf("shed_total{queue_bytes} = %v, want 1", got)
	}
	if got := count(t, s.m.held); got != 8 {
		t.Fatalf("queue_bytes = %v, want 8", got)
	}
	close(f.Gate)
	r.wg.Wait()
	if got := count(t, s.m.held); got != 0 {
		t.Fatalf("queue_bytes = %v once every job is done, want 0", got)
	}

	// A Session's two jobs of a segment share their copy.
	g := &fake{Gate: make(chan struct{}), started: make(chan string, 16)}
	s2, _ := newStage(t, Config{Workers: 1, Queue: 100, ThumbQueue: 100, QueueBytes: 10}, g)
	var out items
	d := s2.NewSession("ses", []byte("init"), chunk.Header{}, out.emit, nil)
	d.Segment(chunk.Header{Seq: 1}, []byte("123456"))()
	if got := count(t, s2.m.held); got != 6 {
		t.Fatalf("queue_bytes = %v for one segment's two jobs, want 6 (one copy)", got)
	}
	d.Segment(chunk.Header{Seq: 2}, []byte("abcdef"))() // 12 > 10: both shed
	close(g.Gate)
	d.Wait()
	var made, shed int
	for _, it := range out.list() {
		switch {
		case it.Header.Seq == 1 && it.Kind == media.ItemSegment:
			made++
		case it.Header.Seq == 2 && it.Kind == media.ItemGap && it.Shed:
			shed++
		}
	}
	if made < 2 || shed != 2 {
		t.Fatalf("made %d items of segment 1 (want its thumbnail and proxy), shed %d of segment 2 (want 2): %v", made, shed, out.list())
	}
	if got := count(t, s2.m.held); got != 0 {
		t.Fatalf("queue_bytes = %v once every job is done, want 0", got)
	}
}
