package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Errors a hold's callers branch on.
var (
	ErrHeld    = errors.New("incident is under legal hold")
	ErrNotHeld = errors.New("incident is not under legal hold")
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
	var at dbTime
	err := c.db.QueryRowContext(ctx, `SELECT reason, reference, placed_by, placed_at FROM holds WHERE incident = ? AND released_at IS NULL`, incident).
		Scan(&h.Reason, &h.Reference, &h.PlacedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hold of %s: %w", incident, err)
	}
	h.PlacedAt = at.T
	return &h, nil
}

// PlaceHold suspends deletion of an incident, records who and why in the
// audit trail, and queues the hold.placed alert.
func (c *Catalog) PlaceHold(ctx context.Context, h Hold) error {
	if h.Reason == "" || h.Reference == "" || h.PlacedBy == "" {
		return errors.New("a legal hold needs a reason, a police report reference and who places it")
	}
	err := c.tx(ctx, func(tx *dbTx) error {
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
			h.Incident, h.Reason, h.Reference, h.PlacedBy, h.PlacedAt); err != nil {
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
	err := c.tx(ctx, func(tx *dbTx) error {
		camera, err := liveIncident(ctx, tx, incident)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE holds SET released_by = ?, released_at = ?, release_reason = ? WHERE incident = ? AND released_at IS NULL`,
			by, now, reason, incident)
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
