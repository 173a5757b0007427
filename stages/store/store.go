// Package store is the pipeline stage that writes sealed chunks to the
// chunk store, immutable and with their deadline.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"camvault/storage"
)

// ChunkWriter is the part of storage.ChunkStore this stage needs.
type ChunkWriter interface {
	Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Writer puts chunks, retrying transient failures.
type Writer struct {
	Store    ChunkWriter
	Attempts int           // default 5
	Backoff  time.Duration // first retry delay, doubled each time; default 50 ms
	// Failed, if set, hears of every failed attempt before its retry (or
	// before Put gives up), so the backoffice learns that storage is
	// degraded while chunks are still being saved.
	Failed func(key string, err error)
}

// Put stores one chunk. A chunk already stored with the very same bytes
// (a retry after a crash or a timeout that did land) counts as stored;
// different bytes under the key are an error, never an overwrite.
func (w *Writer) Put(ctx context.Context, key string, chunk []byte, retainUntil time.Time) error {
	attempts, backoff := w.Attempts, w.Backoff
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = 50 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		err = w.Store.Put(ctx, key, chunk, retainUntil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, storage.ErrExists):
			return w.sameBytes(ctx, key, chunk)
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

func (w *Writer) sameBytes(ctx context.Context, key string, chunk []byte) error {
	rc, err := w.Store.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("store chunk %s: exists but unreadable: %w", key, err)
	}
	defer rc.Close()
	have, err := io.ReadAll(io.LimitReader(rc, int64(len(chunk))+1))
	if err != nil {
		return fmt.Errorf("store chunk %s: exists but unreadable: %w", key, err)
	}
	if !bytes.Equal(have, chunk) {
		return fmt.Errorf("store chunk %s: %w with different content", key, storage.ErrExists)
	}
	return nil
}
