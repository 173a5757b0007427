package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// CameraInfo is what the backoffice shows of a camera: never its secret.
type CameraInfo struct {
	ID        string     `json:"id"`
	Officer   string     `json:"officer"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// AddCamera registers a camera, audited as `camera.add`; it fails if the
// id exists.
func (c *Catalog) AddCamera(ctx context.Context, cam Camera) error {
	by := cam.AddedBy
	if by == "" {
		by = "camvault"
	}
	return c.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO cameras(id, officer, secret_mac, created_at) VALUES(?,?,?,?)`,
			cam.ID, cam.Officer, cam.SecretMAC, ts(cam.CreatedAt)); err != nil {
			return fmt.Errorf("add camera %q: %w", cam.ID, err)
		}
		return appendAudit(ctx, tx, cam.CreatedAt, by, "camera.add", "", map[string]any{"camera": cam.ID, "officer": cam.Officer})
	})
}

// Cameras lists the registered cameras by id.
func (c *Catalog) Cameras(ctx context.Context) ([]CameraInfo, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, officer, created_at, revoked_at FROM cameras ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list cameras: %w", err)
	}
	defer rows.Close()
	var out []CameraInfo
	for rows.Next() {
		var ci CameraInfo
		var created string
		var revoked sql.NullString
		if err := rows.Scan(&ci.ID, &ci.Officer, &created, &revoked); err != nil {
			return nil, fmt.Errorf("list cameras: %w", err)
		}
		ci.CreatedAt = parseTS(created)
		if revoked.Valid {
			t := parseTS(revoked.String)
			ci.RevokedAt = &t
		}
		out = append(out, ci)
	}
	return out, rows.Err()
}

// RevokeCamera refuses the camera from its next connection on, audited as
// `camera.revoke` by `by`.
func (c *Catalog) RevokeCamera(ctx context.Context, id, by string, now time.Time) error {
	return c.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cameras SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, ts(now), id)
		if err != nil {
			return fmt.Errorf("revoke camera %q: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("revoke camera %q: %w (or already revoked)", id, ErrNotFound)
		}
		return appendAudit(ctx, tx, now, by, "camera.revoke", "", map[string]any{"camera": id})
	})
}

// RotateCameraSecret replaces the camera's secret MAC (and lifts a
// revocation: the camera gets a fresh credential), audited as
// `camera.rotate` by `by`.
func (c *Catalog) RotateCameraSecret(ctx context.Context, id string, mac []byte, by string, now time.Time) error {
	return c.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cameras SET secret_mac = ?, revoked_at = NULL WHERE id = ?`, mac, id)
		if err != nil {
			return fmt.Errorf("rotate camera %q: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("rotate camera %q: %w", id, ErrNotFound)
		}
		return appendAudit(ctx, tx, now, by, "camera.rotate", "", map[string]any{"camera": id})
	})
}
