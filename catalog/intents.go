package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"camvault/format/chunk"
	"camvault/format/manifest"
)

// The intents table (see the migrations) holds one row for every object the write
// path is about to put or has put and not yet committed, so that no object
// in the chunk store is unknown to the catalog. A row is written (and
// committed) before its put and replaced by the chunk row in the
// transaction that commits the chunk; one left over (a crash between the
// put and its commit, a commit that failed) is reconciled at the next
// start, or kept as quarantined with its deadline for the sweeper. The row
// holds everything the chunk row needs, plaintext digest included, so a
// chunk found in the store can be committed without the identity.

// Intent statuses.
const (
	// IntentPending: the put may be in flight, done or failed; the commit
	// (or the next start's reconcile) decides.
	IntentPending = "pending"
	// IntentQuarantined: a reconcile found the object but could not place
	// it in its session's chain (or could not verify it); it is kept, as
	// the store must, until its deadline, when the sweeper deletes it.
	IntentQuarantined = "quarantined"
)

// Intent is an object about to be put: its chunk row, minus the commit.
type Intent struct {
	Chunk
	Created time.Time
	Status  string // IntentPending or IntentQuarantined
	Note    string // why it was quarantined
}

// RecordIntent records, and commits, that ch's object is about to be put.
// The store stage calls it before each put, so a crash after the put
// leaves a row the next start reconciles, never an unknown object.
//
// An intent costs a durable (fsynced) transaction before every put. The
// store stage's workers call it concurrently, so the intents that arrive
// while one transaction is being written go together in the next one
// (group commit): one fsync for all of them rather than one each. A batch
// that fails is retried one intent at a time, so a bad row fails only its
// own chunk.
func (c *Catalog) RecordIntent(ctx context.Context, ch Chunk, now time.Time) error {
	req := &intentReq{ch: ch, now: now, done: make(chan error, 1)}
	b := &c.intentBatch
	b.mu.Lock()
	b.queue = append(b.queue, req)
	if b.writing {
		b.mu.Unlock()
		return <-req.done // the writer of the batch in progress takes this one next
	}
	b.writing = true
	for len(b.queue) > 0 {
		batch := b.queue
		b.queue = nil
		b.mu.Unlock()
		// The batch is everyone's: one caller giving up must not fail the rest.
		wctx := context.WithoutCancel(ctx)
		if err := c.writeIntents(wctx, batch); err != nil && len(batch) > 1 {
			for _, r := range batch {
				r.done <- c.writeIntents(wctx, []*intentReq{r})
			}
		} else {
			for _, r := range batch {
				r.done <- err
			}
		}
		b.mu.Lock()
	}
	b.writing = false
	b.mu.Unlock()
	return <-req.done
}

// intentBatch is the group commit of RecordIntent: the intents waiting
// for the transaction in progress, and whether one is.
type intentBatch struct {
	mu      sync.Mutex
	queue   []*intentReq
	writing bool
}

type intentReq struct {
	ch   Chunk
	now  time.Time
	done chan error
}

func (c *Catalog) writeIntents(ctx context.Context, batch []*intentReq) error {
	err := c.tx(ctx, func(tx *dbTx) error {
		for _, r := range batch {
			ch := r.ch
			if _, err := tx.ExecContext(ctx, `INSERT INTO intents(object, incident, session, track, seq, retain_until, created, start_ns, end_ns, wall,
				plain_size, cipher_size, samples, video_samples, plain_sha256, cipher_sha256) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
				ch.Object, ch.Incident, ch.Session, ch.Track, ch.Seq, ch.RetainUntil, r.now, ch.StartNS, ch.EndNS, ch.Wall,
				ch.PlainSize, ch.CipherSize, ch.Samples, ch.VideoSamples, ch.PlainSHA256, ch.CipherSHA256); err != nil {
				return fmt.Errorf("%s: %w", ch.Object, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record intent to store: %w", err)
	}
	return nil
}

const intentColumns = `object, incident, session, track, seq, retain_until, created, start_ns, end_ns, wall,
	plain_size, cipher_size, samples, video_samples, plain_sha256, cipher_sha256, status, note`

func scanIntent(sc rowScanner) (Intent, error) {
	var in Intent
	var until, created, wall dbTime
	err := sc.Scan(&in.Object, &in.Incident, &in.Session, &in.Track, &in.Seq, &until, &created, &in.StartNS, &in.EndNS, &wall,
		&in.PlainSize, &in.CipherSize, &in.Samples, &in.VideoSamples, &in.PlainSHA256, &in.CipherSHA256, &in.Status, &in.Note)
	in.RetainUntil, in.Created, in.Wall = until.T, created.T, wall.T
	return in, err
}

// PendingIntents returns the intents not yet reconciled, in the order
// their chunks were cut: by session, then sequence, originals before the
// derived chunks of the same segment.
func (c *Catalog) PendingIntents(ctx context.Context) ([]Intent, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+intentColumns+` FROM intents WHERE status = ?
		ORDER BY session, seq, CASE track WHEN 'original' THEN 0 WHEN 'proxy' THEN 1 ELSE 2 END`, IntentPending)
	return scanAll(rows, err, "pending intents", scanIntent)
}

// Intents returns every intent, pending or quarantined, by object.
func (c *Catalog) Intents(ctx context.Context) ([]Intent, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+intentColumns+` FROM intents ORDER BY object`)
	return scanAll(rows, err, "intents", scanIntent)
}

// DropIntent forgets an intent whose object is not in the store: the put
// never happened (or never finished), and the gap the commit stage or the
// restart recorded stands.
func (c *Catalog) DropIntent(ctx context.Context, object string) error {
	if _, err := c.db.ExecContext(ctx, `DELETE FROM intents WHERE object = ?`, object); err != nil {
		return fmt.Errorf("drop intent %s: %w", object, err)
	}
	return nil
}

// QuarantineIntent keeps an intent whose object is in the store but cannot
// join its manifest, with why: the sweeper deletes the object at its
// deadline, unless the incident is held.
func (c *Catalog) QuarantineIntent(ctx context.Context, object, note string) error {
	if _, err := c.db.ExecContext(ctx, `UPDATE intents SET status = ?, note = ? WHERE object = ?`, IntentQuarantined, note, object); err != nil {
		return fmt.Errorf("quarantine %s: %w", object, err)
	}
	return nil
}

// ErrOutOfOrder is returned by CommitRecovered for a chunk its session's
// chain can no longer take: the session has ended, or a later chunk of its
// track is already committed.
var ErrOutOfOrder = errors.New("chunk cannot join its session's chain in order")

// CommitRecovered commits a chunk a reconcile found in the store for a
// pending intent (its header and ciphertext hash already checked against
// the intent), in one transaction: a gap record first for the sequence
// numbers of its track that never reached the store since the last one
// committed, then the chunk row and its manifest record, and the intent
// is deleted. It runs before the sessions a crash left running are ended,
// so the chunk takes its place before their end. ErrOutOfOrder (nothing
// written) when the session's chain cannot take it.
func (c *Catalog) CommitRecovered(ctx context.Context, in Intent, now time.Time) (manifest.Record, error) {
	var rec manifest.Record
	err := c.tx(ctx, func(tx *dbTx) error {
		var ended dbTime
		err := tx.QueryRowContext(ctx, `SELECT ended_at FROM sessions WHERE id = ? AND incident = ?`, in.Session, in.Incident).Scan(&ended)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: session %s of %s not in the catalog", ErrOutOfOrder, in.Session, in.Incident)
		}
		if err != nil {
			return err
		}
		if ended.Valid {
			return fmt.Errorf("%w: session %s has ended", ErrOutOfOrder, in.Session)
		}
		var last sql.NullInt64
		var lastEnd int64
		if err := tx.QueryRowContext(ctx, `SELECT seq, end_ns FROM chunks WHERE session = ? AND track = ? ORDER BY seq DESC LIMIT 1`,
			in.Session, in.Track).Scan(&last, &lastEnd); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if last.Valid && uint64(last.Int64) >= in.Seq {
			return fmt.Errorf("%w: %s/%d is already followed by %d", ErrOutOfOrder, in.Track, in.Seq, last.Int64)
		}
		// The original track is cut from seq 0 on; derived tracks miss
		// segments routinely (shed work has its own gap records), so only
		// the original's holes are the restart's to record.
		next := uint64(0)
		if last.Valid {
			next = uint64(last.Int64) + 1
		}
		if in.Track == chunk.TrackOriginal && in.Seq > next {
			note := fmt.Sprintf("server stopped before segments %d..%d were stored", next, in.Seq-1)
			if _, err := appendRecord(ctx, tx, manifest.Record{Incident: in.Incident, Kind: manifest.KindGap, Session: in.Session,
				Track: in.Track, Seq: next, StartNS: lastEnd, EndNS: in.StartNS, Wall: now, Note: note}); err != nil {
				return err
			}
		}
		rec, err = commitChunk(ctx, tx, in.Chunk)
		return err
	})
	if err != nil {
		return rec, fmt.Errorf("commit recovered chunk %s: %w", in.Object, err)
	}
	return rec, nil
}

// DueIntent is an intent's object past its deadline, of an incident not held.
type DueIntent struct {
	Incident, Object, Status string
	Size                     int64
}

// DueIntents returns up to limit intents whose object is past its
// deadline at now, of incidents not held: quarantined objects, and any
// pending one no commit or restart came to settle.
func (c *Catalog) DueIntents(ctx context.Context, now time.Time, limit int) ([]DueIntent, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT incident, object, status, cipher_size FROM intents
		WHERE retain_until <= ? AND incident NOT IN (SELECT incident FROM holds WHERE released_at IS NULL)
		ORDER BY retain_until LIMIT ?`, now, limit)
	return scanAll(rows, err, "due intents", func(sc rowScanner) (DueIntent, error) {
		var d DueIntent
		return d, sc.Scan(&d.Incident, &d.Object, &d.Status, &d.Size)
	})
}

// Accounted reports whether the catalog accounts for the store object
// key: a live chunk's, an intent's (pending or quarantined), or a
// checkpoint anchor of an incident not deleted whose checkpoint the
// catalog holds. Anything else in the store is unaccounted for. held says
// whether the incident the key belongs to is under a legal hold.
func (c *Catalog) Accounted(ctx context.Context, key string) (known, held bool, err error) {
	incident, rest, _ := strings.Cut(key, "/")
	q := `EXISTS (SELECT 1 FROM chunks WHERE object = ?1 AND deleted_at IS NULL)
		OR EXISTS (SELECT 1 FROM intents WHERE object = ?1)`
	args := []any{key, incident}
	if idx, ok := anchorIndex(rest); ok {
		q += ` OR EXISTS (SELECT 1 FROM checkpoints c JOIN incidents i ON i.id = c.incident
			WHERE c.incident = ?2 AND c.idx = ?3 AND i.deleted_at IS NULL)`
		args = append(args, idx)
	}
	q += `, EXISTS (SELECT 1 FROM holds WHERE incident = ?2 AND released_at IS NULL)`
	if err := c.db.QueryRowContext(ctx, `SELECT `+q, args...).Scan(&known, &held); err != nil {
		return false, false, fmt.Errorf("account for %s: %w", key, err)
	}
	return known, held, nil
}

// anchorIndex parses the part of a checkpoint anchor's key after the
// incident (manifest.AnchorKey).
func anchorIndex(rest string) (int64, bool) {
	name, ok := strings.CutPrefix(rest, manifest.AnchorDir)
	if !ok {
		return 0, false
	}
	digits, ok := strings.CutSuffix(name, ".json")
	if !ok || len(digits) != 12 {
		return 0, false
	}
	idx, err := strconv.ParseInt(digits, 10, 64)
	return idx, err == nil
}
