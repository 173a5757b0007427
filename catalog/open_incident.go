package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OpenIncident returns the id of the camera's incident that is recording
// now, or ErrNotFound: what an officer's assist request is about.
func (c *Catalog) OpenIncident(ctx context.Context, camera string) (string, error) {
	var id string
	err := c.db.QueryRowContext(ctx, `SELECT id FROM incidents WHERE camera = ? AND status = ? ORDER BY started_at DESC LIMIT 1`,
		camera, StatusOpen).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("open incident of camera %q: %w", camera, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("open incident of camera %q: %w", camera, err)
	}
	return id, nil
}

// maxCameraAlerts bounds CameraAlerts: a camera reporting its location
// every few seconds for a long shift stays well below it.
const maxCameraAlerts = 20000

// CameraAlerts returns a camera's alerts of one type between from and to
// (to zero: until now), oldest first, at most the latest maxCameraAlerts.
func (c *Catalog) CameraAlerts(ctx context.Context, camera, typ string, from, to time.Time) ([]Alert, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, type, camera, coalesce(incident,''), at, data FROM alerts
		WHERE camera = ? AND type = ? ORDER BY id DESC LIMIT ?`, camera, typ, maxCameraAlerts)
	all, err := scanAlerts(rows, err)
	if err != nil {
		return nil, err
	}
	out := make([]Alert, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		if a := all[i]; !a.At.Before(from) && (to.IsZero() || !a.At.After(to)) {
			out = append(out, a)
		}
	}
	return out, nil
}
