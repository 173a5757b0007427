package commit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/storage"
)

// ReconcileCatalog is what Reconcile needs of the catalog: the intents a
// crash left, and the three ways of settling one.
type ReconcileCatalog interface {
	PendingIntents(ctx context.Context) ([]catalog.Intent, error)
	CommitRecovered(ctx context.Context, in catalog.Intent, now time.Time) (manifest.Record, error)
	QuarantineIntent(ctx context.Context, object, note string) error
	DropIntent(ctx context.Context, object string) error
}

// ObjectReader reads an object back from the chunk store.
type ObjectReader interface {
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Reconciled says what Reconcile did with the intents it found.
type Reconciled struct {
	Committed   int // found, verified and committed in their session's chain
	Quarantined int // found but not placeable or not verifiable: kept to their deadline
	Dropped     int // never stored: the gap record stands
	Pending     int // the store could not say: left for the next start (and the sweeper)
}

// Reconcile settles the intents a crash (or a failed commit) left: the
// objects put whose chunk row never committed. It runs at start-up,
// before the sessions a crash left running are ended and before any
// camera is accepted. For each intent, in the order the chunks were cut:
// an object not in the store is dropped (its put never landed); one that
// is there is verified without the identity (its header must name the
// intent's place and times, its length and SHA-256 must be the sealed
// chunk's) and committed with its manifest record when its session's
// chain can still take it in order, which is the usual case: the last
// chunks of an interrupted session. Anything else (an ended session, a
// later chunk already committed, a mismatch) is quarantined with its
// deadline, for the sweeper to delete on time.
func Reconcile(ctx context.Context, cat ReconcileCatalog, store ObjectReader, now func() time.Time, log *slog.Logger) (Reconciled, error) {
	var res Reconciled
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	intents, err := cat.PendingIntents(ctx)
	if err != nil {
		return res, err
	}
	for _, in := range intents {
		b, err := readObject(ctx, store, in.Object, in.CipherSize)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			if err := cat.DropIntent(ctx, in.Object); err != nil {
				return res, err
			}
			res.Dropped++
			continue
		case err != nil:
			// Not knowing whether the object is there, keep the intent:
			// it still accounts for the object, and its deadline holds.
			log.Error("reconcile: cannot read back a chunk put before the stop", "object", in.Object, "err", err)
			res.Pending++
			continue
		}
		if why := checkObject(in, b); why != "" {
			log.Warn("reconcile: chunk quarantined", "object", in.Object, "reason", why)
			if err := cat.QuarantineIntent(ctx, in.Object, why); err != nil {
				return res, err
			}
			res.Quarantined++
			continue
		}
		rec, err := cat.CommitRecovered(ctx, in, now())
		if errors.Is(err, catalog.ErrOutOfOrder) {
			log.Warn("reconcile: chunk quarantined", "object", in.Object, "reason", err.Error())
			if err := cat.QuarantineIntent(ctx, in.Object, err.Error()); err != nil {
				return res, err
			}
			res.Quarantined++
			continue
		}
		if err != nil {
			return res, err
		}
		log.Info("reconcile: chunk stored before the stop committed", "object", in.Object, "incident", in.Incident, "record", rec.Index)
		res.Committed++
	}
	return res, nil
}

// readObject reads key whole, up to one byte more than the size the
// intent expects, so an oversized object shows as a mismatch without being
// read to its end.
func readObject(ctx context.Context, store ObjectReader, key string, size int64) ([]byte, error) {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, size+1))
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", key, err)
	}
	return b, nil
}

// checkObject says why b is not the chunk the intent announced ("" when
// it is): what the ingest side can check without the identity.
func checkObject(in catalog.Intent, b []byte) string {
	if int64(len(b)) != in.CipherSize {
		return fmt.Sprintf("object is %d bytes, the sealed chunk was %d", len(b), in.CipherSize)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != in.CipherSHA256 {
		return "ciphertext SHA-256 differs from the sealed chunk's"
	}
	h, _, _, err := chunk.Parse(b)
	if err != nil {
		return err.Error()
	}
	if h.Incident != in.Incident || h.Session != in.Session || h.Track != in.Track || h.Seq != in.Seq ||
		h.StartNS != in.StartNS || h.EndNS != in.EndNS || !h.Wall.Equal(in.Wall) || !h.RetainUntil.Equal(in.RetainUntil) {
		return fmt.Sprintf("header names %s/%s/%s/%d, the intent %s/%s/%s/%d", h.Incident, h.Session, h.Track, h.Seq,
			in.Incident, in.Session, in.Track, in.Seq)
	}
	return ""
}
