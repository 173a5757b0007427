// Package commit is the pipeline's last, in-order stage: it makes stored
// chunks durable in the catalog, appends them to the incident's hash-chained
// manifest, and signs checkpoints of the chain. At start-up, Reconcile
// settles the chunks a crash left stored but not committed.
package commit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/internal/failpoint"
	"camvault/media"
	"camvault/pipeline"
	"camvault/storage"
)

// Catalog is what the commit stage needs from the catalog.
type Catalog interface {
	CommitChunk(ctx context.Context, ch catalog.Chunk) (manifest.Record, error)
	AppendRecord(ctx context.Context, r manifest.Record) (manifest.Record, error)
	EndSession(ctx context.Context, incident, session string, now time.Time, status, note string) (manifest.Record, error)
	Head(ctx context.Context, incident string) (index uint64, hash string, ok bool, err error)
	AddCheckpoint(ctx context.Context, cp manifest.Checkpoint) error
	LatestDeadline(ctx context.Context, incident string) (time.Time, error)
}

// AnchorStore is where signed checkpoints are anchored: the WORM chunk
// store, out of reach of whoever can rewrite the catalog.
type AnchorStore interface {
	Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error
}

// Committer commits in order; one per pipeline.
type Committer struct {
	Catalog Catalog
	Signer  ed25519.PrivateKey
	// Node is the id of the node whose key Signer is, named in every
	// checkpoint so that a verifier checks it against that node's key.
	Node string
	Now  func() time.Time
	// Anchors, when set, receives a copy of every signed checkpoint, kept
	// as long as the incident's chunks: a WORM copy of the signed head
	// that whoever can rewrite the catalog cannot rewrite too.
	Anchors AnchorStore
	// CheckpointEvery signs the head after this many chunks of an
	// incident (and always at a session's end). Default 30 (~1 minute).
	CheckpointEvery int
	// Alerts, when set, hears of the first shed derived work of each
	// incident (transcode.shed).
	Alerts Alerter
	// Durable, when set, is called after each chunk is committed, with
	// the time it became durable (for the latency metrics).
	Durable func(it *media.Item, at time.Time)
	// Ended, when set, is called once a session's end is committed: its
	// last item has left the pipeline.
	Ended func(session string)
	// Recover, when set, is told of every catalog write that failed
	// before it is retried, so that a full disk's reserve is released
	// and the retry has the room it needs: a full disk must not cost the
	// record of what it cost. Its answer (whether it freed room) is only
	// informative; the retry follows RetryFor either way.
	Recover func(err error) bool
	// Log receives what the stage cannot return: a failed commit is an
	// item's error, logged here; nil discards.
	Log *slog.Logger
	// RetryFor is how long a catalog write that fails (a locked or slow
	// database) is retried before the item's commit fails. The stage is
	// serial, so a retry holds up every stream: it is kept short, and what
	// is still not committed after it was stored is left to Reconcile at
	// the next start (its intent is in the catalog). Default 10 s.
	RetryFor time.Duration
	// Backoff spaces those retries; default 50 ms doubling to 2 s, jittered.
	Backoff pipeline.Backoff
	// Retries, if set, counts the catalog writes retried.
	Retries prometheus.Counter

	// Only the serial commit goroutine touches these.
	sinceCheckpoint map[string]int  // incident -> chunks since the last checkpoint
	shedAlerted     map[string]bool // incidents whose transcode.shed alert is queued
}

// Chunk commits a stored chunk.
func (c *Committer) Chunk(ctx context.Context, ch catalog.Chunk) (manifest.Record, error) {
	var rec manifest.Record
	err := c.retry(ctx, "commit chunk", func() (err error) {
		rec, err = c.Catalog.CommitChunk(ctx, ch)
		return err
	})
	if err != nil {
		return rec, err
	}
	if c.sinceCheckpoint == nil {
		c.sinceCheckpoint = map[string]int{}
	}
	c.sinceCheckpoint[ch.Incident]++
	every := c.CheckpointEvery
	if every <= 0 {
		every = 30
	}
	if c.sinceCheckpoint[ch.Incident] >= every {
		if err := c.Checkpoint(ctx, ch.Incident); err != nil {
			return rec, err
		}
	}
	return rec, nil
}

// retry calls write until it succeeds, ctx ends or RetryFor has passed,
// with a backoff between tries. Each write is one catalog transaction,
// which either committed or did not, so a retry never records twice.
func (c *Committer) retry(ctx context.Context, what string, write func() error) error {
	retryFor := c.RetryFor
	if retryFor <= 0 {
		retryFor = 10 * time.Second
	}
	giveUp := time.Now().Add(retryFor)
	for i := 0; ; i++ {
		err := write()
		// A session that lost its camera's lease may never write again:
		// no retry can change that.
		if err == nil || ctx.Err() != nil || time.Now().After(giveUp) || errors.Is(err, catalog.ErrLeaseLost) {
			return err
		}
		c.logger().Warn("catalog write failed, retrying", "write", what, "attempt", i+1, "err", err)
		if c.Recover != nil {
			// A full disk: the monitor releases the reserve, so the
			// next try has the room to record the loss.
			c.Recover(err)
		}
		if c.Retries != nil {
			c.Retries.Inc()
		}
		if c.Backoff.Wait(ctx, i) != nil {
			return err
		}
	}
}

// Gap records something lost (a segment that could not be sealed or stored).
func (c *Committer) Gap(ctx context.Context, incident, session, track string, seq uint64, startNS, endNS int64, note string) error {
	return c.gap(ctx, chunk.Header{Incident: incident, Session: session, Track: track, Seq: seq, StartNS: startNS, EndNS: endNS}, note)
}

// gap records the loss of h's span: its track, seq and media time and,
// when h says when its start was recorded, the wall-clock range they
// cover, so the gap says when footage is missing, not only when the loss
// was committed.
func (c *Committer) gap(ctx context.Context, h chunk.Header, note string) error {
	rec := manifest.Record{Incident: h.Incident, Kind: manifest.KindGap, Session: h.Session,
		Track: h.Track, Seq: h.Seq, StartNS: h.StartNS, EndNS: h.EndNS, Wall: c.Now(), Note: note}
	if !h.Wall.IsZero() {
		from, to := h.Wall.UTC(), h.Wall.Add(time.Duration(max(h.EndNS-h.StartNS, 0))).UTC()
		rec.FromWall, rec.ToWall = &from, &to
	}
	return c.retry(ctx, "append gap", func() error {
		_, err := c.Catalog.AppendRecord(ctx, rec)
		return err
	})
}

// End records a session's end and signs a checkpoint.
func (c *Committer) End(ctx context.Context, incident, session, status, note string) error {
	now := c.Now()
	err := c.retry(ctx, "end session", func() error {
		_, err := c.Catalog.EndSession(ctx, incident, session, now, status, note)
		return err
	})
	if err != nil {
		return err
	}
	return c.Checkpoint(ctx, incident)
}

// Checkpoint signs the incident's current head.
func (c *Committer) Checkpoint(ctx context.Context, incident string) error {
	idx, head, ok, err := c.Catalog.Head(ctx, incident)
	if err != nil || !ok {
		return err
	}
	cp := manifest.Checkpoint{Incident: incident, Node: c.Node, Index: idx, Head: head, Time: c.Now().UTC()}
	cp.Sign(c.Signer)
	if err := c.retry(ctx, "add checkpoint", func() error { return c.Catalog.AddCheckpoint(ctx, cp) }); err != nil {
		return fmt.Errorf("checkpoint %s: %w", incident, err)
	}
	delete(c.sinceCheckpoint, incident)
	if c.Anchors == nil {
		return nil
	}
	// Signed and in the catalog, not yet anchored: the Reanchorer's case.
	failpoint.Hit("commit.checkpoint-before-anchor", incident)
	line, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	// A failed anchor is written later by a Reanchorer, from the catalog's
	// copy of line.
	if err := putAnchor(ctx, c.Catalog, c.Anchors, incident, idx, cp.Time, line); err != nil {
		return fmt.Errorf("%w: %w", ErrNotAnchored, err)
	}
	// Anchored, not yet marked so in the catalog (the Reanchorer marks it).
	failpoint.Hit("commit.checkpoint-after-anchor", incident)
	return nil
}

// ErrNotAnchored is a checkpoint signed and committed to the catalog whose
// copy in the store could not be written yet: a Reanchorer writes it
// later, so a caller may carry on.
var ErrNotAnchored = errors.New("checkpoint signed but not yet anchored")

// putAnchor writes a checkpoint's line to the store under its anchor key,
// kept as long as the incident's chunks (or, without any, from signed).
func putAnchor(ctx context.Context, cat deadlines, anchors AnchorStore, incident string, idx uint64, signed time.Time, line []byte) error {
	until, err := cat.LatestDeadline(ctx, incident)
	if err != nil {
		return fmt.Errorf("anchor checkpoint %s/%d: %w", incident, idx, err)
	}
	if until.IsZero() {
		until = signed
	}
	// A checkpoint of the same head re-signed later (after a restart) finds
	// the first one anchored: that one stands.
	if err := anchors.Put(ctx, manifest.AnchorKey(incident, idx), line, until); err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("anchor checkpoint %s/%d: %w", incident, idx, err)
	}
	return nil
}

// deadlines is the part of the catalog an anchor's deadline comes from.
type deadlines interface {
	LatestDeadline(ctx context.Context, incident string) (time.Time, error)
}
