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
	Intents  Intents
	Now      func() time.Time // the intents' creation time; default time.Now
	Attempts int              // default 5
	Backoff  time.Duration    // first retry delay, doubled each time; default 50 ms
	// Failed, if set, hears of every failed attempt before its retry (or
	// before Put gives up), so the backoffice learns that storage is
	// degraded while chunks are still being saved.
	Failed func(key string, err error)
}

// Put stores one chunk. A chunk already stored with the very same bytes
// (a retry after a crash or a timeout that did land) counts as stored;
// different bytes under the key are an error, never an overwrite.
func (w *Writer) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	attempts, backoff := w.Attempts, w.Backoff
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = 50 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		err = w.Store.Put(ctx, key, data, retainUntil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, storage.ErrExists):
			return w.sameBytes(ctx, key, data)
		case errors.Is(err, storage.ErrInvalidKey), ctx.Err() != nil:
			return fmt.Errorf("store chunk %s: %w", key, err)
		}
		if w.Failed != nil {
			w.Failed(key, err)
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return fmt.Errorf("store chunk %s: %w (after %v)", key, ctx.Err(), err)
		}
	}
	return fmt.Errorf("store chunk %s after %d attempts: %w", key, attempts, err)
}

func (w *Writer) sameBytes(ctx context.Context, key string, want []byte) error {
	rc, err := w.Store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("store chunk %s: exists but unreadable: %w", key, err)
	}
	defer rc.Close()
	have, err := io.ReadAll(io.LimitReader(rc, int64(len(want))+1))
	if err != nil {
		return fmt.Errorf("store chunk %s: exists but unreadable: %w", key, err)
	}
	if !bytes.Equal(have, want) {
		return fmt.Errorf("store chunk %s: %w with different content", key, storage.ErrExists)
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
	it.Object = chunk.ObjectKey(it.Header)
	if w.Intents != nil {
		now := time.Now
		if w.Now != nil {
			now = w.Now
		}
		if err := w.Intents.RecordIntent(ctx, row(it), now()); err != nil {
			it.Err, it.Object = err, ""
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
