package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The staff tables (see the migrations) hold the backoffice's people: accounts, their API tokens
// and their login sessions. Tokens and session ids are stored only as
// SHA-256 digests, so a copy of the catalog hands out no credential.

// StaffUser is a backoffice account.
type StaffUser struct {
	Name         string    `json:"name"`
	Role         string    `json:"role"`
	PasswordHash string    `json:"-"`
	Disabled     bool      `json:"disabled"`
	CreatedAt    time.Time `json:"created_at"`
	ChangedAt    time.Time `json:"changed_at"`
}

// AddStaff creates an account with its first API token (digest), audited
// as done by `by`, in one transaction.
func (c *Catalog) AddStaff(ctx context.Context, u StaffUser, tokenDigest []byte, by string, now time.Time) error {
	return c.tx(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO staff(name, role, password_hash, created_at, changed_at) VALUES(?,?,?,?,?)`,
			u.Name, u.Role, u.PasswordHash, now, now); err != nil {
			return fmt.Errorf("add user %q: %w", u.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO staff_tokens(digest, name, created_at) VALUES(?,?,?)`, tokenDigest, u.Name, now); err != nil {
			return fmt.Errorf("add token of %q: %w", u.Name, err)
		}
		return appendAudit(ctx, tx, now, by, "user.add", "", map[string]any{"user": u.Name, "role": u.Role})
	})
}

const staffCols = `name, role, password_hash, disabled, created_at, changed_at`

func scanStaff(r rowScanner) (StaffUser, error) {
	var u StaffUser
	var created, changed dbTime
	if err := r.Scan(&u.Name, &u.Role, &u.PasswordHash, &u.Disabled, &created, &changed); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return u, ErrNotFound
		}
		return u, err
	}
	u.CreatedAt, u.ChangedAt = created.T, changed.T
	return u, nil
}

// Staff looks up an account by name.
func (c *Catalog) Staff(ctx context.Context, name string) (StaffUser, error) {
	u, err := scanStaff(c.db.QueryRowContext(ctx, `SELECT `+staffCols+` FROM staff WHERE name = ?`, name))
	if err != nil {
		return u, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

// StaffList returns every account by name.
func (c *Catalog) StaffList(ctx context.Context) ([]StaffUser, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+staffCols+` FROM staff ORDER BY name`)
	return scanAll(rows, err, "list staff", scanStaff)
}

// staffChange runs q (which must touch the row of name) and audits it.
func (c *Catalog) staffChange(ctx context.Context, name, action, by string, now time.Time, q string, args ...any) error {
	return c.tx(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("%s %q: %w", action, name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		return appendAudit(ctx, tx, now, by, action, "", map[string]any{"user": name})
	})
}

// SetStaffPassword replaces an account's password hash; its sessions end.
func (c *Catalog) SetStaffPassword(ctx context.Context, name, hash, by string, now time.Time) error {
	if err := c.staffChange(ctx, name, "user.passwd", by, now,
		`UPDATE staff SET password_hash = ?, changed_at = ? WHERE name = ?`, hash, now, name); err != nil {
		return err
	}
	return c.EndStaffSessions(ctx, name)
}

// DisableStaff disables an account: its sessions are deleted and its
// tokens stop working (lookups check the flag, so nothing is cached).
func (c *Catalog) DisableStaff(ctx context.Context, name, by string, now time.Time) error {
	if err := c.staffChange(ctx, name, "user.disable", by, now,
		`UPDATE staff SET disabled = 1, changed_at = ? WHERE name = ?`, now, name); err != nil {
		return err
	}
	return c.EndStaffSessions(ctx, name)
}

// AddStaffToken stores another API token (its digest) for an account.
func (c *Catalog) AddStaffToken(ctx context.Context, name string, digest []byte, by string, now time.Time) error {
	return c.tx(ctx, func(tx *dbTx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM staff WHERE name = ?`, name).Scan(&n); err != nil {
			return fmt.Errorf("user.token %q: %w", name, err)
		}
		if n == 0 {
			return fmt.Errorf("user %q: %w", name, ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO staff_tokens(digest, name, created_at) VALUES(?,?,?)`, digest, name, now); err != nil {
			return fmt.Errorf("user.token %q: %w", name, err)
		}
		return appendAudit(ctx, tx, now, by, "user.token", "", map[string]any{"user": name})
	})
}

// RevokeStaffTokens revokes every live token of an account.
func (c *Catalog) RevokeStaffTokens(ctx context.Context, name, by string, now time.Time) error {
	if _, err := c.Staff(ctx, name); err != nil {
		return err
	}
	return c.tx(ctx, func(tx *dbTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE staff_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL`, now, name)
		if err != nil {
			return fmt.Errorf("revoke tokens of %q: %w", name, err)
		}
		n, _ := res.RowsAffected()
		return appendAudit(ctx, tx, now, by, "user.revoke-tokens", "", map[string]any{"user": name, "tokens": n})
	})
}

// StaffByToken returns the enabled account holding the live token with
// this digest, ErrNotFound otherwise.
func (c *Catalog) StaffByToken(ctx context.Context, digest []byte) (StaffUser, error) {
	return scanStaff(c.db.QueryRowContext(ctx, `SELECT s.name, s.role, s.password_hash, s.disabled, s.created_at, s.changed_at
		FROM staff_tokens t JOIN staff s ON s.name = t.name
		WHERE t.digest = ? AND t.revoked_at IS NULL AND s.disabled = 0`, digest))
}

// AddStaffSession stores a login session (its id's digest) with its CSRF
// token.
func (c *Catalog) AddStaffSession(ctx context.Context, digest []byte, name, csrf string, now time.Time) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO staff_sessions(digest, name, csrf, created_at, seen_at) VALUES(?,?,?,?,?)`,
		digest, name, csrf, now, now)
	if err != nil {
		return fmt.Errorf("add session of %q: %w", name, err)
	}
	return nil
}

// StaffBySession returns the enabled account of a session that has been
// used within idle and began within absolute of now, with its CSRF token,
// and marks it used. An expired session is deleted.
func (c *Catalog) StaffBySession(ctx context.Context, digest []byte, now time.Time, idle, absolute time.Duration) (StaffUser, string, error) {
	var u StaffUser
	var csrf string
	err := c.tx(ctx, func(tx *dbTx) error {
		var created, seen dbTime
		err := tx.QueryRowContext(ctx, `SELECT csrf, created_at, seen_at FROM staff_sessions WHERE digest = ?`, digest).Scan(&csrf, &created, &seen)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if now.Sub(seen.T) > idle || now.Sub(created.T) > absolute {
			if _, err := tx.ExecContext(ctx, `DELETE FROM staff_sessions WHERE digest = ?`, digest); err != nil {
				return err
			}
			return ErrNotFound
		}
		u, err = scanStaff(tx.QueryRowContext(ctx, `SELECT `+staffCols+` FROM staff s
			WHERE name = (SELECT name FROM staff_sessions WHERE digest = ?) AND disabled = 0`, digest))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE staff_sessions SET seen_at = ? WHERE digest = ?`, now, digest)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return u, "", ErrNotFound
	}
	return u, csrf, err
}

// PruneStaffSessions deletes every session expired as of now, so
// abandoned sessions do not pile up; it returns how many.
func (c *Catalog) PruneStaffSessions(ctx context.Context, now time.Time, idle, absolute time.Duration) (int64, error) {
	res, err := c.db.ExecContext(ctx, `DELETE FROM staff_sessions WHERE seen_at < ? OR created_at < ?`, now.Add(-idle), now.Add(-absolute))
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	return res.RowsAffected()
}

// EndStaffSession deletes one session (logout).
func (c *Catalog) EndStaffSession(ctx context.Context, digest []byte) error {
	_, err := c.db.ExecContext(ctx, `DELETE FROM staff_sessions WHERE digest = ?`, digest)
	return err
}

// EndStaffSessions deletes every session of an account.
func (c *Catalog) EndStaffSessions(ctx context.Context, name string) error {
	_, err := c.db.ExecContext(ctx, `DELETE FROM staff_sessions WHERE name = ?`, name)
	return err
}
