package commit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/internal/failpoint"
	"camvault/storage"
)

// ReanchorCatalog is what a Reanchorer needs from the catalog.
type ReanchorCatalog interface {
	PendingAnchors(ctx context.Context, limit int) ([]catalog.PendingAnchor, error)
	MarkAnchored(ctx context.Context, incident string, index uint64) error
	LatestDeadline(ctx context.Context, incident string) (time.Time, error)
}

// ReanchorStore is the chunk store as a Reanchorer uses it: it looks an
// anchor up before writing it, so a checkpoint anchored in time costs one
// read, not a second write refused with ErrExists.
type ReanchorStore interface {
	AnchorStore
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Reanchorer writes the checkpoint anchors that Checkpoint could not (the
// store refused, or the node stopped between the catalog's checkpoint and
// the anchor). Until its anchor is in the store a checkpoint is only in
// the catalog, where whoever holds the node key can rewrite it with the
// manifest; verify on the node warns of such an incident. The server runs
// one beside the pipeline, its rounds on one node at a time (Lock); it is
// safe to run while Checkpoint anchors the same checkpoints (the store
// takes each key once; both write the same line with the same deadline).
type Reanchorer struct {
	Catalog ReanchorCatalog
	Store   ReanchorStore
	// Batch bounds the checkpoints one round looks at; default 64.
	Batch int
	// MaxWait bounds the backoff while the store refuses; default 10 min.
	MaxWait time.Duration
	Log     *slog.Logger // nil discards
	// Lock, when set, runs Run's rounds on one node of those sharing the
	// catalog at a time (the catalog's advisory lock): a round is safe to
	// run on several at once, this spares the store and the catalog the
	// work done twice.
	Lock Locker
}

// Locker runs a job on one node at a time (catalog.Catalog.Exclusive).
type Locker interface {
	Exclusive(ctx context.Context, job string, fn func(context.Context) error) (ran bool, err error)
}

// reanchorJob names the Reanchorer's lock.
const reanchorJob = "re-anchor checkpoints"

// RoundExclusive is Round under Lock: while another node runs a round, it
// does nothing and returns ran=false.
func (r *Reanchorer) RoundExclusive(ctx context.Context) (written int, more, ran bool, err error) {
	if r.Lock == nil {
		written, more, err = r.Round(ctx)
		return written, more, true, err
	}
	ran, err = r.Lock.Exclusive(ctx, reanchorJob, func(ctx context.Context) error {
		var err error
		written, more, err = r.Round(ctx)
		return err
	})
	return written, more, ran, err
}

// Round looks at one batch of checkpoints not known to be anchored: each
// whose anchor is in the store is marked so, each whose anchor is missing
// is written and then marked. It returns how many anchors it wrote, more
// when the batch was full (another round may find more), and the first
// failure; one checkpoint's failure does not stop the others.
func (r *Reanchorer) Round(ctx context.Context) (written int, more bool, err error) {
	batch := r.Batch
	if batch <= 0 {
		batch = 64
	}
	pending, err := r.Catalog.PendingAnchors(ctx, batch)
	if err != nil {
		return 0, false, err
	}
	var first error
	for _, p := range pending {
		wrote, err := r.anchor(ctx, p)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if wrote {
			written++
		}
	}
	return written, len(pending) == batch, first
}

func (r *Reanchorer) anchor(ctx context.Context, p catalog.PendingAnchor) (wrote bool, err error) {
	key := manifest.AnchorKey(p.Incident, p.Index)
	rc, err := r.Store.Get(ctx, key)
	switch {
	case err == nil:
		rc.Close()
	case errors.Is(err, storage.ErrNotFound):
		var cp manifest.Checkpoint
		if err := json.Unmarshal(p.Line, &cp); err != nil {
			return false, fmt.Errorf("checkpoint %s/%d in the catalog: %w", p.Incident, p.Index, err)
		}
		if err := putAnchor(ctx, r.Catalog, r.Store, p.Incident, p.Index, cp.Time, p.Line); err != nil {
			return false, err
		}
		wrote = true
	default:
		return false, fmt.Errorf("look up anchor %s: %w", key, err)
	}
	failpoint.Hit("commit.reanchor-before-mark", key)
	return wrote, r.Catalog.MarkAnchored(ctx, p.Incident, p.Index)
}

// Run runs rounds until ctx ends: the first at once (anchors a failing
// store left before a restart), then every interval, at once again while
// rounds come back full, and, while the store refuses, after a wait that
// doubles from every up to MaxWait.
func (r *Reanchorer) Run(ctx context.Context, every time.Duration) {
	maxWait := r.MaxWait
	if maxWait <= 0 {
		maxWait = 10 * time.Minute
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wait time.Duration
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		written, more, _, err := r.RoundExclusive(ctx)
		if written > 0 {
			log.Info("checkpoint anchors written by the retry", "count", written)
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			wait = min(max(2*wait, every), maxWait)
			log.Warn("checkpoint anchors not written; retrying", "in", wait, "err", err)
		case more:
			wait = 0
		default:
			wait = every
		}
	}
}
