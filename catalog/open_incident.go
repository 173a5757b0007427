package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
