package catalog

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"camvault/format/manifest"
)

// StatusDeleted marks an incident removed by retention: chunks deleted,
// wrapped keys destroyed.
const StatusDeleted = "deleted"

// Errors callers branch on.
var (
	ErrHeld    = errors.New("incident is under legal hold")
	ErrNotHeld = errors.New("incident is not under legal hold")
	ErrDeleted = errors.New("incident was deleted by retention")
)

// Hold is an active legal hold.
type Hold struct {
	Incident  string    `json:"incident"`
	Reason    string    `json:"reason"`
	Reference string    `json:"reference"`
	PlacedBy  string    `json:"placed_by"`
	PlacedAt  time.Time `json:"placed_at"`
}

// ActiveHold returns the incident's hold, if any.
func (c *Catalog) ActiveHold(ctx context.Context, incident string) (*Hold, error) {
	h := Hold{Incident: incident}
	var at string
	err := c.db.QueryRowContext(ctx, `SELECT reason, reference, placed_by, placed_at FROM holds WHERE incident = ? AND released_at IS NULL`, incident).
		Scan(&h.Reason, &h.Reference, &h.PlacedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hold of %s: %w", incident, err)
	}
	h.PlacedAt = parseTS(at)
	return &h, nil
}

// PlaceHold suspends deletion of an incident, records who and why in the
// audit trail, and queues the hold.placed alert.
func (c *Catalog) PlaceHold(ctx context.Context, h Hold) error {
	if h.Reason == "" || h.Reference == "" || h.PlacedBy == "" {
		return errors.New("a legal hold needs a reason, a police report reference and who places it")
	}
	err := c.tx(ctx, func(tx *sql.Tx) error {
		camera, err := liveIncident(ctx, tx, h.Incident)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM holds WHERE incident = ? AND released_at IS NULL`, h.Incident).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return ErrHeld
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO holds(incident, reason, reference, placed_by, placed_at) VALUES(?,?,?,?,?)`,
			h.Incident, h.Reason, h.Reference, h.PlacedBy, ts(h.PlacedAt)); err != nil {
			return err
		}
		details := map[string]any{"reason": h.Reason, "reference": h.Reference}
		if err := appendAudit(ctx, tx, h.PlacedAt, h.PlacedBy, "hold.placed", h.Incident, details); err != nil {
			return err
		}
		return insertAlert(ctx, tx, "hold.placed", camera, h.Incident, h.PlacedAt, details)
	})
	if err != nil {
		return fmt.Errorf("place hold on %s: %w", h.Incident, err)
	}
	return nil
}

// ReleaseHold lifts an incident's hold; its normal deadlines apply again.
func (c *Catalog) ReleaseHold(ctx context.Context, incident, by, reason string, now time.Time) error {
	if by == "" || reason == "" {
		return errors.New("releasing a legal hold needs a reason and who releases it")
	}
	err := c.tx(ctx, func(tx *sql.Tx) error {
		camera, err := liveIncident(ctx, tx, incident)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE holds SET released_by = ?, released_at = ?, release_reason = ? WHERE incident = ? AND released_at IS NULL`,
			by, ts(now), reason, incident)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotHeld
		}
		details := map[string]any{"reason": reason}
		if err := appendAudit(ctx, tx, now, by, "hold.released", incident, details); err != nil {
			return err
		}
		return insertAlert(ctx, tx, "hold.released", camera, incident, now, details)
	})
	if err != nil {
		return fmt.Errorf("release hold on %s: %w", incident, err)
	}
	return nil
}

// liveIncident returns the incident's camera, or an error if it does not
// exist or was deleted.
func liveIncident(ctx context.Context, tx *sql.Tx, incident string) (string, error) {
	var camera string
	var deleted sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT camera, deleted_at FROM incidents WHERE id = ?`, incident).Scan(&camera, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("incident %q: %w", incident, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	if deleted.Valid {
		return "", fmt.Errorf("%w on %s", ErrDeleted, parseTS(deleted.String).Format("2006-01-02"))
	}
	return camera, nil
}

// DeletedAt reports when retention deleted the incident (zero if not).
func (c *Catalog) DeletedAt(ctx context.Context, incident string) (time.Time, error) {
	var deleted sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT deleted_at FROM incidents WHERE id = ?`, incident).Scan(&deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("incident %q: %w", incident, ErrNotFound)
	}
	if err != nil || !deleted.Valid {
		return time.Time{}, err
	}
	return parseTS(deleted.String), nil
}

// LiveObjects returns the store keys of an incident's chunks not yet deleted.
func (c *Catalog) LiveObjects(ctx context.Context, incident string) ([]string, error) {
	return c.texts(ctx, `SELECT object FROM chunks WHERE incident = ? AND deleted_at IS NULL ORDER BY object`, incident)
}

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
		ORDER BY retain_until LIMIT ?`, ts(now), limit)
	if err != nil {
		return nil, fmt.Errorf("due chunks: %w", err)
	}
	defer rows.Close()
	var out []DueChunk
	for rows.Next() {
		var d DueChunk
		if err := rows.Scan(&d.Incident, &d.Object, &d.Size); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// MarkChunkDeleted records that a chunk's object is gone from the store.
func (c *Catalog) MarkChunkDeleted(ctx context.Context, object string, now time.Time) error {
	_, err := c.db.ExecContext(ctx, `UPDATE chunks SET deleted_at = ? WHERE object = ? AND deleted_at IS NULL`, ts(now), object)
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
	err := c.tx(ctx, func(tx *sql.Tx) error {
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
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET wrapped_key = X'' WHERE incident = ?`, incident); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ?, deleted_at = ? WHERE id = ?`, StatusDeleted, ts(now), incident); err != nil {
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

// AuditRecord is one entry of the hash-chained audit trail.
type AuditRecord struct {
	At       time.Time      `json:"at"`
	Actor    string         `json:"actor"`
	Action   string         `json:"action"`
	Incident string         `json:"incident,omitempty"`
	Details  map[string]any `json:"details,omitempty"`
	Prev     string         `json:"prev"`
}

func appendAudit(ctx context.Context, tx *sql.Tx, at time.Time, actor, action, incident string, details map[string]any) error {
	prev := manifest.Genesis
	err := tx.QueryRowContext(ctx, `SELECT hash FROM audit ORDER BY id DESC LIMIT 1`).Scan(&prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	line, err := json.Marshal(AuditRecord{At: at.UTC(), Actor: actor, Action: action, Incident: incident, Details: details, Prev: prev})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(line)
	_, err = tx.ExecContext(ctx, `INSERT INTO audit(at, actor, action, incident, line, hash) VALUES(?,?,?,?,?,?)`,
		ts(at), actor, action, incident, line, hex.EncodeToString(sum[:]))
	return err
}

// AddAudit appends one record to the audit trail on its own (a footage
// view, say); changes that are audited together with what they change use
// appendAudit inside their own transaction.
func (c *Catalog) AddAudit(ctx context.Context, at time.Time, actor, action, incident string, details map[string]any) error {
	if actor == "" || action == "" {
		return errors.New("an audit record needs who and what")
	}
	return c.tx(ctx, func(tx *sql.Tx) error {
		return appendAudit(ctx, tx, at, actor, action, incident, details)
	})
}

// AuditLines returns the audit trail's records as stored, oldest first.
func (c *Catalog) AuditLines(ctx context.Context) ([][]byte, error) {
	return c.lines(ctx, `SELECT line FROM audit ORDER BY id`)
}

// Extend lengthens the deadline of every live chunk of the incident to at
// least its recording time plus period, records it in the audit trail, and
// returns the chunks whose deadline moved, with their new deadline.
func (c *Catalog) Extend(ctx context.Context, incident, category string, period time.Duration, by, reason string, now time.Time) (map[string]time.Time, error) {
	if by == "" || reason == "" {
		return nil, errors.New("extending retention needs a reason and who extends it")
	}
	moved := map[string]time.Time{}
	err := c.tx(ctx, func(tx *sql.Tx) error {
		if _, err := liveIncident(ctx, tx, incident); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT object, wall, retain_until FROM chunks WHERE incident = ? AND deleted_at IS NULL`, incident)
		if err != nil {
			return err
		}
		type row struct {
			object         string
			wall, deadline time.Time
		}
		var all []row
		for rows.Next() {
			var r row
			var wall, until string
			if err := rows.Scan(&r.object, &wall, &until); err != nil {
				rows.Close()
				return err
			}
			r.wall, r.deadline = parseTS(wall), parseTS(until)
			all = append(all, r)
		}
		rows.Close()
		for _, r := range all {
			if nd := r.wall.Add(period); nd.After(r.deadline) {
				if _, err := tx.ExecContext(ctx, `UPDATE chunks SET retain_until = ? WHERE object = ?`, ts(nd), r.object); err != nil {
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

// LatestDeadline returns the latest deadline among the incident's live
// chunks (zero if it has none).
func (c *Catalog) LatestDeadline(ctx context.Context, incident string) (time.Time, error) {
	var until sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT max(retain_until) FROM chunks WHERE incident = ? AND deleted_at IS NULL`, incident).Scan(&until)
	if err != nil || !until.Valid {
		return time.Time{}, err
	}
	return parseTS(until.String), nil
}
