// Package store is the pipeline stage that writes sealed chunks to the
// chunk store: put once, immutable, with their deadline, retrying what a
// store refuses for a moment, so that a slow disk or a blip of S3 costs
// latency, not footage. Each put is preceded by the chunk's intent in the
// catalog, so a crash between the put and its commit leaves nothing the
// catalog does not know of.
package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/internal/failpoint"
	"camvault/media"
	"camvault/pipeline"
	"camvault/storage"
)

// ChunkWriter is the part of storage.ChunkStore this stage needs.
type ChunkWriter interface {
	Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Intents is the part of the catalog that records an object before its
// put (catalog.RecordIntent), so that no object is ever in the store
// without the catalog knowing of it: a crash between the put and its
// commit leaves an intent that the next start reconciles.
type Intents interface {
	RecordIntent(ctx context.Context, ch catalog.Chunk, now time.Time) error
}

// Writer puts chunks, retrying transient failures.
type Writer struct {
	Store ChunkWriter
	// Intents, when set, hears of every chunk before its put; a chunk
	// whose intent cannot be recorded is not put (it becomes a gap).
	Intents Intents
	Now     func() time.Time // the intents' creation time; default time.Now
	// RetryFor is how long one chunk is retried before it is given up
	// (and becomes a gap): long enough to ride out an object store's
	// restart, short enough that a dead store costs each chunk a bounded
	// wait. Default 30 s.
	RetryFor time.Duration
	// Attempts, if above 0, also caps the tries of one chunk.
	Attempts int
	// PutTimeout bounds one try, so a store that hangs without answering
	// is retried like one that refuses. Default 20 s.
	PutTimeout time.Duration
	// Backoff spaces the retries: capped exponential with jitter,
	// default 50 ms doubling to 2 s.
	Backoff pipeline.Backoff
	// Failed, if set, hears of every failed attempt before its retry (or
	// before Put gives up), so the backoffice learns that storage is
	// degraded while chunks are still being saved.
	Failed func(key string, err error)
	// Metrics, if set, counts retries, give-ups and the time spent
	// waiting to retry (NewMetrics).
	Metrics *Metrics
	// Gate, when set, is asked before each chunk: an error keeps the chunk
	// out of the store, its intent unwritten, and it becomes a gap. A disk
	// out of space says so, to leave what room is left to the catalog's
	// records of the loss.
	Gate func() error
}

// Metrics are the store stage's retry collectors: the pipeline's own
// per-stage metrics show that puts are slow (latency, in_flight, the
// queue before the stage); these show why.
type Metrics struct {
	retries  prometheus.Counter
	failures prometheus.Counter
	backoff  prometheus.Counter
	waiting  prometheus.Gauge
}

// NewMetrics registers camvault_store_put_retries_total,
// camvault_store_put_failures_total, camvault_store_put_backoff_seconds_total
// and camvault_store_put_retrying with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "camvault", Subsystem: "store", Name: "put_retries_total",
			Help: "Chunk puts the store refused or did not answer in time, retried after a backoff."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "camvault", Subsystem: "store", Name: "put_failures_total",
			Help: "Chunks given up after their retries (each recorded as a gap)."}),
		backoff: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "camvault", Subsystem: "store", Name: "put_backoff_seconds_total",
			Help: "Time chunk puts spent waiting to retry."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "camvault", Subsystem: "store", Name: "put_retrying",
			Help: "Chunks whose put failed at least once and is being retried now."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.retries, m.failures, m.backoff, m.waiting} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register store metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Put stores one chunk. A chunk already stored with the very same bytes
// (a retry after a crash or a timeout that did land) counts as stored;
// different bytes under the key are an error, never an overwrite.
func (w *Writer) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	timeout := w.PutTimeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	err := w.retry(ctx, key, true, func() error { return w.try(ctx, key, data, retainUntil, timeout) })
	if err != nil {
		return fmt.Errorf("store chunk %s: %w", key, err)
	}
	return nil
}

// retry calls attempt, a write of key's chunk, until it succeeds, fails
// for good (other bytes under the key, an invalid key), ctx ends, or
// RetryFor (or Attempts) is spent, with a backoff between tries. A put's
// failed tries are reported to Failed and counted in the metrics.
func (w *Writer) retry(ctx context.Context, key string, put bool, attempt func() error) error {
	retryFor := w.RetryFor
	if retryFor <= 0 {
		retryFor = 30 * time.Second
	}
	m := w.Metrics
	if !put {
		m = nil
	}
	giveUp := time.Now().Add(retryFor)
	retrying := false
	defer func() {
		if retrying {
			m.waiting.Dec()
		}
	}()
	for i := 0; ; i++ {
		err := attempt()
		var diff *differentError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &diff), errors.Is(err, storage.ErrInvalidKey), ctx.Err() != nil:
			return err
		}
		if put && w.Failed != nil {
			w.Failed(key, err)
		}
		if !retrying && m != nil {
			// The gauge counts chunks, not tries.
			retrying = true
			m.waiting.Inc()
		}
		if (w.Attempts > 0 && i+1 >= w.Attempts) || time.Now().After(giveUp) {
			if m != nil {
				m.failures.Inc()
			}
			return fmt.Errorf("after %d attempts: %w", i+1, err)
		}
		if werr := w.wait(ctx, m, i); werr != nil {
			return fmt.Errorf("%w (after %v)", werr, err)
		}
	}
}

// wait is the backoff before retry i, counted in m if not nil.
func (w *Writer) wait(ctx context.Context, m *Metrics, i int) error {
	if m == nil {
		return w.Backoff.Wait(ctx, i)
	}
	m.retries.Inc()
	t0 := time.Now()
	err := w.Backoff.Wait(ctx, i)
	m.backoff.Add(time.Since(t0).Seconds())
	return err
}

// try is one attempt: the put, and when the key is taken, the check that
// it holds these very bytes (a put of ours that landed).
func (w *Writer) try(ctx context.Context, key string, data []byte, retainUntil time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := w.Store.Put(ctx, key, data, retainUntil)
	if errors.Is(err, storage.ErrExists) {
		return w.sameBytes(ctx, key, data)
	}
	return err
}

// differentError is a key that holds other bytes: final, never retried.
type differentError struct{}

func (e *differentError) Error() string {
	return storage.ErrExists.Error() + " with different content"
}

func (e *differentError) Unwrap() error { return storage.ErrExists }

// sameBytes reports whether key holds want. A read that fails is an
// ordinary error (retried: the object may be there and the store slow);
// other bytes are a *differentError.
func (w *Writer) sameBytes(ctx context.Context, key string, want []byte) error {
	rc, err := w.Store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("exists but unreadable: %w", err)
	}
	defer rc.Close()
	have, err := io.ReadAll(io.LimitReader(rc, int64(len(want))+1))
	if err != nil {
		return fmt.Errorf("exists but unreadable: %w", err)
	}
	if !bytes.Equal(have, want) {
		return &differentError{}
	}
	return nil
}

// Stage returns the store stage with workers goroutines: each puts its
// item's sealed chunk under the chunk's object key with the deadline from
// its header. Puts are fsync-bound, so more writers than cores pays.
func (w *Writer) Stage(workers int) pipeline.Stage[*media.Item, *media.Item] {
	return pipeline.Stage[*media.Item, *media.Item]{Name: "store", Workers: workers, Fn: w.store}
}

// store puts one item. A failure is carried on the item, so that the
// commit stage records a gap in its place.
func (w *Writer) store(ctx context.Context, it *media.Item) (*media.Item, error) {
	if !it.Pending() {
		return it, nil
	}
	defer it.Sealed.Release()
	if w.Gate != nil {
		if err := w.Gate(); err != nil {
			it.Err = fmt.Errorf("store chunk %s: %w", chunk.ObjectKey(it.Header), err)
			return it, nil
		}
	}
	it.Object = chunk.ObjectKey(it.Header)
	if w.Intents != nil {
		now := time.Now
		if w.Now != nil {
			now = w.Now
		}
		// Retried like a put: a catalog that is locked or slow for a
		// moment must not cost the chunk.
		ch := row(it)
		err := w.retry(ctx, it.Object, false, func() error { return w.Intents.RecordIntent(ctx, ch, now()) })
		if err != nil {
			it.Err, it.Object = fmt.Errorf("record intent of %s: %w", it.Object, err), ""
			return it, nil
		}
	}
	if err := w.Put(ctx, it.Object, it.Sealed.Bytes, it.Header.RetainUntil); err != nil {
		it.Err = err
		return it, nil
	}
	// The put→commit window a power cut can hit: the object is stored,
	// its row not yet committed (crash tests kill here).
	failpoint.Hit("store.after-put", it.Object)
	return it, nil
}

// row is the catalog row of a sealed, stored item: what its intent
// records and what the commit stage commits.
func row(it *media.Item) catalog.Chunk {
	h := it.Header
	return catalog.Chunk{
		Incident: h.Incident, Session: h.Session, Track: h.Track, Seq: h.Seq, Object: it.Object,
		StartNS: h.StartNS, EndNS: h.EndNS, Wall: h.Wall, RetainUntil: h.RetainUntil,
		PlainSize: int64(it.Sealed.PlainSize), CipherSize: int64(it.CipherSize), Samples: int64(it.Samples),
		VideoSamples: int64(it.VideoSamples),
		PlainSHA256:  hex.EncodeToString(it.Sealed.PlainSHA256[:]), CipherSHA256: hex.EncodeToString(it.Sealed.CipherSHA256[:]),
	}
}
