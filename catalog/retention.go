package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"camvault/format/manifest"
)

// ErrDeleted is returned for an incident that retention deleted.
var ErrDeleted = errors.New("incident was deleted by retention")

// DueChunk is a chunk past its deadline, of an incident not held.
type DueChunk struct {
	Incident string
	Object   string
	Size     int64
}

// DueChunks returns up to limit chunks due for deletion at now.
func (c *Catalog) DueChunks(ctx context.Context, now time.Time, limit int) ([]DueChunk, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT incident, object, cipher_size FROM chunks
		WHERE deleted_at IS NULL AND retain_until <= ?
		AND incident NOT IN (SELECT incident FROM holds WHERE released_at IS NULL)
		ORDER BY retain_until LIMIT ?`, now, limit)
	return scanAll(rows, err, "due chunks", func(sc rowScanner) (DueChunk, error) {
		var d DueChunk
		if err := sc.Scan(&d.Incident, &d.Object, &d.Size); err != nil {
			return d, err
		}
		return d, nil
	})
}

// MarkChunkDeleted records that a chunk's object is gone from the store.
func (c *Catalog) MarkChunkDeleted(ctx context.Context, object string, now time.Time) error {
	_, err := c.db.ExecContext(ctx, `UPDATE chunks SET deleted_at = ? WHERE object = ? AND deleted_at IS NULL`, now, object)
	if err != nil {
		return fmt.Errorf("mark %s deleted: %w", object, err)
	}
	return nil
}

// Shreddable returns incidents whose every chunk is deleted, that have
// ended, are not held, and still have their keys.
func (c *Catalog) Shreddable(ctx context.Context) ([]string, error) {
	return c.texts(ctx, `SELECT i.id FROM incidents i
		WHERE i.deleted_at IS NULL AND i.status != ?
		AND EXISTS (SELECT 1 FROM chunks WHERE incident = i.id)
		AND NOT EXISTS (SELECT 1 FROM chunks WHERE incident = i.id AND deleted_at IS NULL)
		AND NOT EXISTS (SELECT 1 FROM holds WHERE incident = i.id AND released_at IS NULL)`, StatusOpen)
}

// Deletion is the record of an incident removed by retention.
type Deletion struct {
	Incident     string    `json:"incident"`
	Chunks       int       `json:"chunks"`
	Bytes        int64     `json:"bytes"`
	ManifestHead string    `json:"manifest_head"`
	At           time.Time `json:"at"`
}

// Shred destroys an incident's wrapped data keys (crypto-shredding: any
// copy of its chunks anywhere is now unreadable), marks it deleted and
// writes the deletion record to the audit trail, all in one transaction.
// It re-checks, inside the transaction, that no chunk remains and no hold
// was placed meanwhile.
func (c *Catalog) Shred(ctx context.Context, incident string, now time.Time) (Deletion, error) {
	d := Deletion{Incident: incident, At: now.UTC()}
	err := c.tx(ctx, func(tx *dbTx) error {
		camera, err := liveIncident(ctx, tx, incident)
		if err != nil {
			return err
		}
		var live, held int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM chunks WHERE incident = ? AND deleted_at IS NULL`, incident).Scan(&live); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM holds WHERE incident = ? AND released_at IS NULL`, incident).Scan(&held); err != nil {
			return err
		}
		if live > 0 || held > 0 {
			return fmt.Errorf("not shreddable: %d live chunks, held %v", live, held > 0)
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(cipher_size),0) FROM chunks WHERE incident = ?`, incident).Scan(&d.Chunks, &d.Bytes); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT head FROM incidents WHERE id = ?`, incident).Scan(&d.ManifestHead); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET wrapped_key = ? WHERE incident = ?`, []byte{}, incident); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ?, deleted_at = ? WHERE id = ?`, StatusDeleted, now, incident); err != nil {
			return err
		}
		details := map[string]any{"chunks": d.Chunks, "bytes": d.Bytes, "manifest_head": d.ManifestHead}
		if err := appendAudit(ctx, tx, now, "retention", "retention.deleted", incident, details); err != nil {
			return err
		}
		return insertAlert(ctx, tx, "retention.deleted", camera, incident, now, details)
	})
	if err != nil {
		return d, fmt.Errorf("shred %s: %w", incident, err)
	}
	return d, nil
}

func appendAudit(ctx context.Context, tx *dbTx, at time.Time, actor, action, incident string, details map[string]any) error {
	if q := tx.d.serialiseAudit; q != "" {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("lock the audit trail: %w", err)
		}
	}
	head := manifest.Genesis
	err := tx.QueryRowContext(ctx, `SELECT hash FROM audit ORDER BY id DESC LIMIT 1`).Scan(&head)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	chain := manifest.ChainAt(head)
	line, hash, err := chain.Link(func(prev string) ([]byte, error) {
		return json.Marshal(AuditRecord{At: at.UTC(), Actor: actor, Action: action, Incident: incident, Details: details, Prev: prev})
	})
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit(at, actor, action, incident, line, hash) VALUES(?,?,?,?,?,?)`,
		at, actor, action, incident, line, hash)
	return err
}

// Extend lengthens the deadline of every live chunk of the incident to at
// least its recording time plus period, records it in the audit trail, and
// returns the chunks whose deadline moved, with their new deadline.
func (c *Catalog) Extend(ctx context.Context, incident, category string, period time.Duration, by, reason string, now time.Time) (map[string]time.Time, error) {
	if by == "" || reason == "" {
		return nil, errors.New("extending retention needs a reason and who extends it")
	}
	moved := map[string]time.Time{}
	err := c.tx(ctx, func(tx *dbTx) error {
		if _, err := liveIncident(ctx, tx, incident); err != nil {
			return err
		}
		type row struct {
			object         string
			wall, deadline time.Time
		}
		rows, err := tx.QueryContext(ctx, `SELECT object, wall, retain_until FROM chunks WHERE incident = ? AND deleted_at IS NULL`, incident)
		all, err := scanAll(rows, err, "live chunks", func(sc rowScanner) (row, error) {
			var r row
			var wall, until dbTime
			err := sc.Scan(&r.object, &wall, &until)
			r.wall, r.deadline = wall.T, until.T
			return r, err
		})
		if err != nil {
			return err
		}
		for _, r := range all {
			if nd := r.wall.Add(period); nd.After(r.deadline) {
				if _, err := tx.ExecContext(ctx, `UPDATE chunks SET retain_until = ? WHERE object = ?`, nd, r.object); err != nil {
					return err
				}
				moved[r.object] = nd
			}
		}
		return appendAudit(ctx, tx, now, by, "retention.extended", incident,
			map[string]any{"category": category, "period": period.String(), "reason": reason, "chunks": len(moved)})
	})
	if err != nil {
		return nil, fmt.Errorf("extend retention of %s: %w", incident, err)
	}
	return moved, nil
}
