// Package retention is the retention domain: how long footage is kept
// (the retention categories), the legal holds that suspend deletion, and
// the sweeper that enforces deadlines. The sweeper deletes every chunk
// past its deadline whose incident is not under legal hold, then
// crypto-shreds each incident left without chunks (its wrapped data keys
// are destroyed) and writes a deletion record to the audit trail. It
// deletes, at their deadline, the objects the write path put and never
// committed (intents left over, or quarantined by a restart's
// reconcile), and, listing the store, reports and deletes at its deadline
// any object the catalog does not account for, so nothing in the store is
// kept past its deadline because the catalog lost track of it.
//
// It sees the catalog and the chunk store only through the small
// interfaces below, each defined where it is used; the catalog is the
// authority (every change audited there), the store mirrors its holds and
// deadlines.
//
// The order makes it crash-safe and idempotent: chunks go first, each
// marked deleted in the catalog once the store confirms; an incident's keys
// are destroyed only in a transaction that re-checks that none of its
// chunks remains and no hold was placed. Killed anywhere, the next run
// finishes the job, and a key is never destroyed while a chunk needs it.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"camvault/audit"
	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/internal/failpoint"
	"camvault/storage"
)

// Deleter is the part of the chunk store the sweeper needs.
type Deleter interface {
	Delete(ctx context.Context, key string) error
}

// SweepCatalog is what the sweeper needs of the catalog: the chunks due,
// the incidents left with none to shred, the intents (objects put and
// never committed, or quarantined at a restart) due, and whether the
// catalog accounts for an object found in the store.
type SweepCatalog interface {
	DueChunks(ctx context.Context, now time.Time, limit int) ([]catalog.DueChunk, error)
	MarkChunkDeleted(ctx context.Context, object string, now time.Time) error
	Shreddable(ctx context.Context) ([]string, error)
	Shred(ctx context.Context, incident string, now time.Time) (catalog.Deletion, error)
	DueIntents(ctx context.Context, now time.Time, limit int) ([]catalog.DueIntent, error)
	DropIntent(ctx context.Context, object string) error
	Accounted(ctx context.Context, key string) (known, held bool, err error)
}

// Sweeper deletes what is due.
type Sweeper struct {
	Catalog SweepCatalog
	Store   Deleter
	Now     func() time.Time
	Log     *slog.Logger
	Batch   int // chunks per catalog query; default 1000
	// ScanEvery is how often a sweep also lists the whole store (a
	// storage.Lister) for objects the catalog does not account for,
	// reports them and deletes those past their deadline: the first sweep
	// scans, later ones once ScanEvery has passed on the sweeper's clock.
	// Zero never scans; a negative value scans at every sweep. Listing
	// costs a request per thousand objects on S3 and a directory walk on
	// fs, so serve scans daily rather than every ten minutes.
	ScanEvery time.Duration
	// Lock, when set, keeps Run's sweeps on one node at a time among
	// those sharing the catalog (nil: this is the only node). A sweep
	// stopped midway (its node killed, its lock's connection lost) leaves
	// work that the next sweep, on whichever node, finishes: deleting a
	// chunk gone already is no error, and the catalog marks it deleted.
	Lock Singleton

	lastScan time.Time
}

// Singleton runs a job unless another node runs it at the moment.
type Singleton interface {
	Exclusive(ctx context.Context, job string, fn func(context.Context) error) (ran bool, err error)
}

// lockJob names the sweep for Singleton.
const lockJob = "retention sweep"

// Result says what one sweep did (or, dry, would do).
type Result struct {
	Chunks    int                `json:"chunks"`
	Bytes     int64              `json:"bytes"`
	Retained  int                `json:"retained"` // the store still refused: its own deadline is later
	Incidents []catalog.Deletion `json:"incidents"`
	DryRun    bool               `json:"dry_run"`
	// Intents counts the objects of intents deleted (or due, dry): chunks
	// quarantined at a restart, or put and never committed.
	Intents int `json:"intents"`
	// Scanned is how many objects the store listed (0: no scan this
	// sweep); Unaccounted names those the catalog does not account for
	// (no chunk row, no intent, not a checkpoint anchor it holds),
	// UnaccountedDeleted how many of them were past their deadline and
	// deleted (a dry run deletes none).
	Scanned            int      `json:"scanned"`
	Unaccounted        []string `json:"unaccounted"`
	UnaccountedDeleted int      `json:"unaccounted_deleted"`
}

// Sweep runs once.
func (s *Sweeper) Sweep(ctx context.Context, dryRun bool) (*Result, error) {
	now := s.Now()
	batch := s.Batch
	if batch <= 0 {
		batch = 1000
	}
	res := &Result{DryRun: dryRun, Incidents: []catalog.Deletion{}, Unaccounted: []string{}}
	if dryRun {
		due, err := s.Catalog.DueChunks(ctx, now, math.MaxInt32)
		for _, d := range due {
			res.Chunks++
			res.Bytes += d.Size
		}
		if err != nil {
			return res, err
		}
		intents, err := s.Catalog.DueIntents(ctx, now, math.MaxInt32)
		res.Intents = len(intents)
		if err != nil {
			return res, err
		}
		return res, s.scan(ctx, now, res)
	}
	seen := map[string]bool{}
	for {
		due, err := s.Catalog.DueChunks(ctx, now, batch)
		if err != nil {
			return res, err
		}
		progress := false
		for _, d := range due {
			if seen[d.Object] {
				continue
			}
			seen[d.Object] = true
			err := s.Store.Delete(ctx, d.Object)
			switch {
			case err == nil, errors.Is(err, storage.ErrNotFound): // gone already: a crash after the store delete
			case errors.Is(err, storage.ErrRetained):
				res.Retained++
				s.log().Warn("store still retains a chunk the catalog says is due", "object", d.Object, "err", err)
				continue
			default:
				return res, fmt.Errorf("delete chunk %s: %w", d.Object, err)
			}
			// Gone from the store, still live in the catalog: the next
			// sweep finds it due again and its delete not found.
			failpoint.Hit("retention.after-delete", d.Object)
			if err := s.Catalog.MarkChunkDeleted(ctx, d.Object, now); err != nil {
				return res, err
			}
			res.Chunks++
			res.Bytes += d.Size
			progress = true
		}
		if len(due) < batch || !progress {
			break
		}
	}
	if err := s.sweepIntents(ctx, now, batch, res); err != nil {
		return res, err
	}
	if err := s.scan(ctx, now, res); err != nil {
		return res, err
	}
	if pc, ok := s.Store.(interface {
		CleanProbes(context.Context) (int, error)
	}); ok {
		if _, err := pc.CleanProbes(ctx); err != nil {
			s.log().Warn("clean store self-test probes", "err", err)
		}
	}
	ids, err := s.Catalog.Shreddable(ctx)
	if err != nil {
		return res, err
	}
	for _, id := range ids {
		d, err := s.Catalog.Shred(ctx, id, now)
		if err != nil {
			return res, err
		}
		failpoint.Hit("retention.after-shred", id)
		s.removeAnchors(ctx, id)
		s.log().Info("incident deleted by retention", "incident", id, "chunks", d.Chunks, "bytes", d.Bytes)
		res.Incidents = append(res.Incidents, d)
	}
	return res, nil
}

// sweepIntents deletes the objects of intents past their deadline (the
// store refuses any earlier, and the catalog leaves out held incidents),
// then the intents: an object quarantined at a restart, or put and never
// committed, is kept exactly as long as a committed chunk would be.
func (s *Sweeper) sweepIntents(ctx context.Context, now time.Time, batch int, res *Result) error {
	seen := map[string]bool{}
	for {
		due, err := s.Catalog.DueIntents(ctx, now, batch)
		if err != nil {
			return err
		}
		progress := false
		for _, d := range due {
			if seen[d.Object] {
				continue
			}
			seen[d.Object] = true
			err := s.Store.Delete(ctx, d.Object)
			switch {
			case err == nil, errors.Is(err, storage.ErrNotFound):
			case errors.Is(err, storage.ErrRetained):
				res.Retained++
				s.log().Warn("store still retains an intent's object the catalog says is due", "object", d.Object, "err", err)
				continue
			default:
				return fmt.Errorf("delete %s object %s: %w", d.Status, d.Object, err)
			}
			if err := s.Catalog.DropIntent(ctx, d.Object); err != nil {
				return err
			}
			s.log().Info("retention deleted an object never committed", "object", d.Object, "status", d.Status)
			res.Intents++
			progress = true
		}
		if len(due) < batch || !progress {
			return nil
		}
	}
}

// scan lists the store, when it can and a scan is due, and reports every
// object the catalog does not account for; one past its deadline, whose
// incident is not held, is deleted (not in a dry run). The catalog is
// asked after the listing: every object is in the catalog (an intent, a
// checkpoint) before its put, so one listed is accounted for by then
// whatever the write path did meanwhile. The audit trail's anchored heads
// are the trail's, kept for good: never reported, never deleted.
func (s *Sweeper) scan(ctx context.Context, now time.Time, res *Result) error {
	l, ok := s.Store.(storage.Lister)
	if !ok || s.ScanEvery == 0 || (s.ScanEvery > 0 && !s.lastScan.IsZero() && now.Sub(s.lastScan) < s.ScanEvery) {
		return nil
	}
	keys, err := l.List(ctx, "")
	if err != nil {
		return fmt.Errorf("list the store: %w", err)
	}
	s.lastScan = now
	res.Scanned = len(keys)
	for _, k := range keys {
		if strings.HasPrefix(k, audit.AnchorDir) {
			continue
		}
		known, held, err := s.Catalog.Accounted(ctx, k)
		if err != nil {
			return err
		}
		if known {
			continue
		}
		res.Unaccounted = append(res.Unaccounted, k)
		if res.DryRun || held {
			s.log().Warn("object in the store the catalog does not account for", "object", k, "held", held)
			continue
		}
		err = s.Store.Delete(ctx, k)
		switch {
		case err == nil:
			res.UnaccountedDeleted++
			s.log().Warn("deleted an object the catalog does not account for, past its deadline", "object", k)
		case errors.Is(err, storage.ErrNotFound):
		case errors.Is(err, storage.ErrRetained):
			s.log().Warn("object in the store the catalog does not account for, kept to its deadline", "object", k, "err", err)
		default:
			return fmt.Errorf("delete unaccounted object %s: %w", k, err)
		}
	}
	return nil
}

// removeAnchors deletes the checkpoint anchors of a shredded incident;
// the audit trail keeps its manifest head. Anchors the store still
// retains stay until a later sweep of a store that can list them.
func (s *Sweeper) removeAnchors(ctx context.Context, incident string) {
	l, ok := s.Store.(storage.Lister)
	if !ok {
		return
	}
	keys, err := l.List(ctx, manifest.AnchorPrefix(incident))
	if err != nil {
		s.log().Warn("list checkpoint anchors", "incident", incident, "err", err)
		return
	}
	for _, k := range keys {
		if err := s.Store.Delete(ctx, k); err != nil && !errors.Is(err, storage.ErrNotFound) {
			s.log().Warn("delete checkpoint anchor", "object", k, "err", err)
		}
	}
}

// Run sweeps every interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, ran, err := s.SweepExclusive(ctx, false); err != nil && ctx.Err() == nil {
			s.log().Error("retention sweep", "err", err)
		} else if !ran {
			s.log().Debug("retention sweep left to the node that runs it now")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepExclusive is Sweep under Lock: while another node sweeps, it does
// nothing and returns ran=false. Without a Lock it always sweeps.
func (s *Sweeper) SweepExclusive(ctx context.Context, dryRun bool) (res *Result, ran bool, err error) {
	sweep := func(ctx context.Context) error {
		res, err = s.Sweep(ctx, dryRun)
		return err
	}
	if s.Lock == nil {
		return res, true, sweep(ctx)
	}
	ran, err = s.Lock.Exclusive(ctx, lockJob, sweep)
	return res, ran, err
}

func (s *Sweeper) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// ChunkHolder is the part of the chunk store that mirrors legal holds.
type ChunkHolder interface {
	SetLegalHold(ctx context.Context, key string, on bool) error
}

// HoldCatalog is what holds need of the catalog: the hold itself (audited
// there) and the chunks to mirror it on.
type HoldCatalog interface {
	PlaceHold(ctx context.Context, h catalog.Hold) error
	ReleaseHold(ctx context.Context, incident, by, reason string, now time.Time) error
	LiveObjects(ctx context.Context, incident string) ([]string, error)
}

// Holds places and releases legal holds on one catalog and chunk store,
// for callers (the backoffice) that are handed a hold keeper rather than
// both.
type Holds struct {
	Catalog HoldCatalog
	Store   ChunkHolder
}

// PlaceHold is PlaceHold on h's catalog and store.
func (h Holds) PlaceHold(ctx context.Context, hold catalog.Hold) error {
	return PlaceHold(ctx, h.Catalog, h.Store, hold)
}

// ReleaseHold is ReleaseHold on h's catalog and store.
func (h Holds) ReleaseHold(ctx context.Context, incident, by, reason string, now time.Time) error {
	return ReleaseHold(ctx, h.Catalog, h.Store, incident, by, reason, now)
}

// PlaceHold records a legal hold in the catalog (authoritative, audited)
// and mirrors it on every stored chunk of the incident.
func PlaceHold(ctx context.Context, cat HoldCatalog, store ChunkHolder, h catalog.Hold) error {
	if err := cat.PlaceHold(ctx, h); err != nil {
		return err
	}
	return mirrorHold(ctx, cat, store, h.Incident, true)
}

// ReleaseHold lifts the hold; the chunks' own deadlines apply again and the
// next sweep deletes those already past.
func ReleaseHold(ctx context.Context, cat HoldCatalog, store ChunkHolder, incident, by, reason string, now time.Time) error {
	if err := cat.ReleaseHold(ctx, incident, by, reason, now); err != nil {
		return err
	}
	return mirrorHold(ctx, cat, store, incident, false)
}

func mirrorHold(ctx context.Context, cat HoldCatalog, store ChunkHolder, incident string, on bool) error {
	objects, err := cat.LiveObjects(ctx, incident)
	if err != nil {
		return err
	}
	for _, o := range objects {
		if err := store.SetLegalHold(ctx, o, on); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("legal hold on chunk %s: %w", o, err)
		}
	}
	return nil
}

// Extender is the part of the chunk store that lengthens deadlines.
type Extender interface {
	Extend(ctx context.Context, key string, retainUntil time.Time) error
}

// Categories are the retention periods an admin may move an incident to.
// They only ever lengthen a deadline.
var Categories = map[string]time.Duration{
	"default":   28 * 24 * time.Hour,
	"complaint": 90 * 24 * time.Hour,
}

// ExtendCatalog is what Extend needs of the catalog: lengthening the
// deadlines of an incident's live chunks, audited there.
type ExtendCatalog interface {
	Extend(ctx context.Context, incident, category string, period time.Duration, by, reason string, now time.Time) (map[string]time.Time, error)
}

// Extend moves an incident to a longer retention category: the catalog
// (authoritative, audited) first, then every stored chunk's own deadline.
func Extend(ctx context.Context, cat ExtendCatalog, store Extender, incident, category, by, reason string, now time.Time) (int, error) {
	period, ok := Categories[category]
	if !ok {
		return 0, fmt.Errorf("unknown retention category %q", category)
	}
	moved, err := cat.Extend(ctx, incident, category, period, by, reason, now)
	if err != nil {
		return 0, err
	}
	for obj, until := range moved {
		if err := store.Extend(ctx, obj, until); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return 0, fmt.Errorf("extend chunk %s: %w", obj, err)
		}
	}
	return len(moved), nil
}
