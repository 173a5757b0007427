package pipeline

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the per-stage collectors of one or more pipelines. Every
// series carries a "stage" label with the Stage (or Source) name; stages of
// different pipelines that share a name share their series.
//
//   - items_total: items that left the stage (failed ones included); for a
//     Source, items accepted.
//   - errors_total: items whose Fn failed (or panicked) in this stage.
//   - bytes_total: sum of Size() of successful outputs that have one.
//   - rejected_total: TrySubmit calls refused because the Source was full.
//   - blocked_seconds_total: time Submit calls spent waiting for room in
//     the Source's queue (backpressure reaching the producers).
//   - blocked: Submit calls waiting for room in the Source's queue now.
//   - queue_depth: items waiting in the stage's input queue, read at scrape.
//   - in_flight: items held by the stage (in Fn, waiting to be handed on, or
//     buffered by an Ordered stage for an earlier one); for a Source, items
//     accepted and not yet finished by the Sink.
//   - latency_seconds: duration of Fn calls.
type Metrics struct {
	items    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	rejected *prometheus.CounterVec
	blockedS *prometheus.CounterVec
	blocked  *prometheus.GaugeVec
	inFlight *prometheus.GaugeVec
	latency  *prometheus.HistogramVec
	depth    *depthCollector
}

// NewMetrics creates the collectors as namespace_pipeline_* and registers
// them with reg; a nil reg leaves them unregistered. Registering twice on
// the same registry reuses the collectors already there. Any other
// registration failure is a programming error and panics, as with
// prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer, namespace string) *Metrics {
	const sub = "pipeline"
	label := []string{"stage"}
	counter := func(name, help string) *prometheus.CounterVec {
		return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: sub, Name: name, Help: help,
		}, label))
	}
	return &Metrics{
		items:    counter("items_total", "Items that left the stage, failed ones included; for a source, items accepted."),
		errors:   counter("errors_total", "Items whose stage function failed or panicked in this stage."),
		bytes:    counter("bytes_total", "Bytes of successful stage outputs that report a Size."),
		rejected: counter("rejected_total", "Non-blocking submissions refused because the source queue was full."),
		blockedS: counter("blocked_seconds_total", "Time submissions spent waiting for room in the source queue."),
		blocked: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "blocked",
			Help: "Submissions waiting for room in the source queue now.",
		}, label)),
		inFlight: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: sub, Name: "in_flight",
			Help: "Items held by the stage; for a source, items accepted and not yet finished by the sink.",
		}, label)),
		latency: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: sub, Name: "latency_seconds",
			Help: "Duration of stage function calls.",
			// 100µs (hashing a small chunk) to ~26 s (a stalled object store).
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, label)),
		depth: register(reg, &depthCollector{
			desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, "queue_depth"),
				"Items waiting in the stage's input queue.", label, nil),
			fns: make(map[uint64]depthFn),
		}),
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("pipeline: registering metrics: %v", err))
	}
	return c
}

// stageMetrics are the children of one stage, resolved once so that the
// per-item path does no label lookups.
type stageMetrics struct {
	items, errors, bytes, rejected, blockedS prometheus.Counter
	inFlight, blocked                        prometheus.Gauge
	latency                                  prometheus.Observer
}

func (m *Metrics) stage(name string) stageMetrics {
	return stageMetrics{
		items:    m.items.WithLabelValues(name),
		errors:   m.errors.WithLabelValues(name),
		bytes:    m.bytes.WithLabelValues(name),
		rejected: m.rejected.WithLabelValues(name),
		blockedS: m.blockedS.WithLabelValues(name),
		blocked:  m.blocked.WithLabelValues(name),
		inFlight: m.inFlight.WithLabelValues(name),
		latency:  m.latency.WithLabelValues(name),
	}
}

type depthFn struct {
	stage string
	fn    func() int
}

// depthCollector samples queue lengths at scrape time. A plain GaugeFunc
// per stage would not do: stages come and go with runs, and two runs may
// use the same stage name, which must add up to one series.
type depthCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	next uint64
	fns  map[uint64]depthFn
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sums := make(map[string]int, len(c.fns))
	for _, f := range c.fns {
		sums[f.stage] += f.fn()
	}
	c.mu.Unlock()
	for stage, n := range sums {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), stage)
	}
}

// track adds fn to the samples until the returned func is called.
func (c *depthCollector) track(stage string, fn func() int) (untrack func()) {
	c.mu.Lock()
	id := c.next
	c.next++
	c.fns[id] = depthFn{stage, fn}
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		delete(c.fns, id)
		c.mu.Unlock()
	}
}
