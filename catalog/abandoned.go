package catalog

import (
	"context"
	"fmt"
	"time"
)

// SettleAbandoned ends the sessions of other nodes that nobody will end:
// their camera's lease expired before now-after and no node took the
// camera over (it never reconnected), so no takeover ended them, and
// their node, dead, will not come back to settle them at its restart (or
// comes back much later). Each gets the gap record a restart would write
// (from its last durable chunk to the lease's expiry, the last moment its
// node was allowed to write) and its end at that expiry, and its incident
// ends, interrupted, unless another of its sessions runs. It returns the
// incidents settled, whose heads the caller signs.
//
// Each session is settled in one transaction that holds its camera's
// lease row and checks again that the lease is still the expired one of
// that session: a renewal that came late, a takeover or a second node
// settling the same session meanwhile leave it alone, so a session is
// settled once whoever runs this at the same moment. after should be at
// least the grace window: until then the camera may still come back and
// be taken over, continuing the incident. A SQLite catalog has one node,
// whose restart settles all it left running: there it does nothing.
func (c *Catalog) SettleAbandoned(ctx context.Context, now time.Time, after time.Duration) ([]string, error) {
	if !c.db.d.shared {
		return nil, nil
	}
	cutoff := now.Add(-after)
	type stale struct{ session, incident, camera string }
	rows, err := c.db.QueryContext(ctx, `SELECT s.id, s.incident, l.camera FROM sessions s JOIN leases l ON l.session = s.id
		WHERE s.ended_at IS NULL AND l.node <> ? AND l.expires_at < ? ORDER BY l.expires_at`, c.node, cutoff)
	found, err := scanAll(rows, err, "find abandoned sessions", func(sc rowScanner) (stale, error) {
		var s stale
		return s, sc.Scan(&s.session, &s.incident, &s.camera)
	})
	if err != nil {
		return nil, err
	}
	var settled []string
	for _, s := range found {
		done := false
		err := c.tx(ctx, func(tx *dbTx) error {
			l, ok, err := readLease(ctx, tx, s.camera)
			if err != nil || !ok || l.Session != s.session || l.Node == c.node || !l.Expires.Before(cutoff) {
				return err // renewed, taken over or settled since it was listed
			}
			var ended dbTime
			if err := tx.QueryRowContext(ctx, `SELECT ended_at FROM sessions WHERE id = ?`, s.session).Scan(&ended); err != nil || ended.Valid {
				return err
			}
			at := l.Expires.UTC()
			cause := fmt.Sprintf("node %s stopped renewing the camera's lease, which expired at %s, and no node took the camera over",
				l.Node, at.Format(gapTime))
			gap, err := lostGap(ctx, tx, s.incident, s.session, at, cause, "the lease's expiry")
			if err != nil {
				return err
			}
			if _, err := appendRecord(ctx, tx, gap); err != nil {
				return err
			}
			note := fmt.Sprintf("%s; settled by node %s at %s", cause, c.node, now.UTC().Format(gapTime))
			if _, err := endSession(ctx, tx, s.incident, s.session, at, StatusInterrupted, note); err != nil {
				return err
			}
			done = true
			return nil
		})
		if err != nil {
			return settled, fmt.Errorf("settle abandoned session %s: %w", s.session, err)
		}
		if done {
			settled = append(settled, s.incident)
		}
	}
	return settled, nil
}
