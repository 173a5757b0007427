package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AlertOnce queues an alert of typ for incident (camera taken from the
// incident) unless the outbox already holds one of that type for it, and
// reports whether it queued one. It lets a condition that recurs for every
// segment (derived work shed under overload) alert the backoffice once per
// incident, across sessions and restarts.
func (c *Catalog) AlertOnce(ctx context.Context, typ, incident string, at time.Time, data map[string]any) (bool, error) {
	queued := false
	err := c.tx(ctx, func(tx *dbTx) error {
		var camera string
		err := tx.QueryRowContext(ctx, `SELECT camera FROM incidents WHERE id = ?`, incident).Scan(&camera)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("incident %q: %w", incident, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM alerts WHERE incident = ? AND type = ?)`, incident, typ).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		queued = true
		return insertAlert(ctx, tx, typ, camera, incident, at, data)
	})
	if err != nil {
		return false, fmt.Errorf("alert %s for %s: %w", typ, incident, err)
	}
	return queued, nil
}
