// Package storage defines where sealed chunks live. A ChunkStore is
// write-once: a key is written at most once, and an object cannot be removed
// before its retain-until time or while it is under legal hold.
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors callers branch on.
var (
	// ErrExists is returned by Put when the key already holds an object.
	ErrExists = errors.New("storage: object already exists")
	// ErrNotFound is returned when no object has the key.
	ErrNotFound = errors.New("storage: object not found")
	// ErrRetained is returned by Delete before the object's deadline or while held.
	ErrRetained = errors.New("storage: object is retained")
	// ErrInvalidKey is returned for keys that are empty, absolute, contain
	// "..", or characters outside [A-Za-z0-9._/-].
	ErrInvalidKey = errors.New("storage: invalid key")
)

// ChunkStore stores immutable objects with a retention deadline.
type ChunkStore interface {
	// Put stores data under key, durable when Put returns nil, with
	// retainUntil as its deadline. It never overwrites: ErrExists.
	Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error
	// Get opens the object for reading.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes the object; ErrRetained before its deadline or while held.
	Delete(ctx context.Context, key string) error
	// Extend moves the object's deadline later; an earlier time is ignored.
	Extend(ctx context.Context, key string, retainUntil time.Time) error
	// SetLegalHold places (on=true) or releases a legal hold.
	SetLegalHold(ctx context.Context, key string, on bool) error
}

// Lister lists the objects under a key prefix ending in "/", or every
// object for "". Both backends implement it; verification uses it to find
// checkpoint anchors that the catalog may no longer mention, and the
// retention sweeper to find objects the catalog does not account for.
type Lister interface {
	List(ctx context.Context, prefix string) ([]string, error)
}
