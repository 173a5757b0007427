package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Camera is a registered camera.
type Camera struct {
	ID        string
	Officer   string
	SecretMAC []byte
	CreatedAt time.Time
	Revoked   bool
	// AddedBy is who registered it, for the audit trail (default
	// "camvault").
	AddedBy string
}

// Camera looks up a camera by id.
func (c *Catalog) Camera(ctx context.Context, id string) (Camera, error) {
	var cam Camera
	var created, revoked dbTime
	err := c.db.QueryRowContext(ctx, `SELECT id, officer, secret_mac, created_at, revoked_at FROM cameras WHERE id = ?`, id).
		Scan(&cam.ID, &cam.Officer, &cam.SecretMAC, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return cam, fmt.Errorf("camera %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return cam, fmt.Errorf("camera %q: %w", id, err)
	}
	cam.CreatedAt = created.T
	cam.Revoked = revoked.Valid
	return cam, nil
}

// CameraCount returns the number of registered cameras.
func (c *Catalog) CameraCount(ctx context.Context) (int, error) {
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM cameras`).Scan(&n)
	return n, err
}

// LookupCamera returns what camera authentication needs.
func (c *Catalog) LookupCamera(ctx context.Context, id string) (officer string, secretMAC []byte, revoked bool, err error) {
	cam, err := c.Camera(ctx, id)
	if err != nil {
		return "", nil, false, err
	}
	return cam.Officer, cam.SecretMAC, cam.Revoked, nil
}

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
	return c.tx(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO cameras(id, officer, secret_mac, created_at) VALUES(?,?,?,?)`,
			cam.ID, cam.Officer, cam.SecretMAC, cam.CreatedAt); err != nil {
			return fmt.Errorf("add camera %q: %w", cam.ID, err)
		}
		return appendAudit(ctx, tx, cam.CreatedAt, by, "camera.add", "", map[string]any{"camera": cam.ID, "officer": cam.Officer})
	})
}

// Cameras lists the registered cameras by id.
func (c *Catalog) Cameras(ctx context.Context) ([]CameraInfo, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, officer, created_at, revoked_at FROM cameras ORDER BY id`)
	return scanAll(rows, err, "list cameras", func(sc rowScanner) (CameraInfo, error) {
		var ci CameraInfo
		var created, revoked dbTime
		if err := sc.Scan(&ci.ID, &ci.Officer, &created, &revoked); err != nil {
			return ci, err
		}
		ci.CreatedAt, ci.RevokedAt = created.T, revoked.ptr()
		return ci, nil
	})
}

// RevokeCamera refuses the camera from its next connection on, audited as
// `camera.revoke` by `by`.
func (c *Catalog) RevokeCamera(ctx context.Context, id, by string, now time.Time) error {
	return c.tx(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE cameras SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, now, id)
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
	return c.tx(ctx, func(tx *dbTx) error {
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
