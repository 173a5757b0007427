package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DefaultLease is how long a camera's lease lasts without renewal.
const DefaultLease = 10 * time.Second

// ErrLeaseHeld is what a LeaseHeldError is: another node records the
// camera, and its lease is live.
var ErrLeaseHeld = errors.New("camera is recording on another node")

// ErrLeaseLost fails a write of a session that no longer holds its
// camera's lease: it expired and another node (or a newer session) took
// the camera over. The session must end without writing again.
var ErrLeaseLost = errors.New("the session no longer holds its camera's lease")

// LeaseHeldError refuses a camera whose live session runs on Node.
type LeaseHeldError struct {
	Camera  string
	Node    string
	Expires time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("camera %s is recording on node %s (its lease runs to %s unless renewed)", e.Camera, e.Node, e.Expires.UTC().Format(gapTime))
}

// Is makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// lease is a camera's lease row.
type lease struct {
	Node, Session string
	Expires       time.Time
}

// readLease reads the camera's lease, locked where the engine has row
// locks (ok false: none).
func readLease(ctx context.Context, tx *dbTx, camera string) (lease, bool, error) {
	var l lease
	var exp dbTime
	err := tx.QueryRowContext(ctx, `SELECT node, session, expires_at FROM leases WHERE camera = ?`+tx.d.forUpdate, camera).Scan(&l.Node, &l.Session, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("lease of camera %q: %w", camera, err)
	}
	l.Expires = exp.T
	return l, true, nil
}

// LeaseHolder returns the error StartSession would refuse camera with at
// now: a *LeaseHeldError while another node's lease is live, else nil.
// It only reads (Admit asks it before a stream is taken).
func (c *Catalog) LeaseHolder(ctx context.Context, camera string, now time.Time) error {
	var node string
	var exp dbTime
	err := c.db.QueryRowContext(ctx, `SELECT node, expires_at FROM leases WHERE camera = ?`, camera).Scan(&node, &exp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("lease of camera %q: %w", camera, err)
	case node != c.node && exp.T.After(now):
		return &LeaseHeldError{Camera: camera, Node: node, Expires: exp.T}
	}
	return nil
}

// acquireLease gives session the camera's lease until now+ttl, in the
// transaction that starts the session: granted when there is none, it
// expired, or it is this node's (a camera reconnecting to the node that
// records it replaces its session). It returns the lease replaced, if
// any, so that the caller settles the session that held it.
func (c *Catalog) acquireLease(ctx context.Context, tx *dbTx, camera, session string, now time.Time, ttl time.Duration) (lease, bool, error) {
	old, ok, err := readLease(ctx, tx, camera)
	if err != nil {
		return old, false, err
	}
	if ok && old.Node != c.node && old.Expires.After(now) {
		return old, false, &LeaseHeldError{Camera: camera, Node: old.Node, Expires: old.Expires}
	}
	exp := now.Add(ttl)
	if ok {
		_, err = tx.ExecContext(ctx, `UPDATE leases SET node = ?, session = ?, expires_at = ? WHERE camera = ?`, c.node, session, exp, camera)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO leases(camera, node, session, expires_at) VALUES(?,?,?,?)`, camera, c.node, session, exp)
	}
	if err != nil {
		return old, false, fmt.Errorf("take lease of camera %q: %w", camera, err)
	}
	return old, ok, nil
}

// checkLease fails with ErrLeaseLost when session may no longer write
// to incident's chain: it has ended (a takeover ends the session it took
// the camera from, in the takeover's transaction) or the camera's lease
// is another node's. Every append of a session to its incident's chain
// checks it in the append's transaction, after the lease row's lock,
// which a takeover holds too: a session whose camera was taken never
// appends after the taker's first record.
func (c *Catalog) checkLease(ctx context.Context, tx *dbTx, incident, session string) error {
	camera, err := sessionCamera(ctx, tx, incident)
	if err != nil {
		return err
	}
	l, ok, err := readLease(ctx, tx, camera)
	if err != nil {
		return err
	}
	var ended dbTime
	if err := tx.QueryRowContext(ctx, `SELECT ended_at FROM sessions WHERE id = ?`, session).Scan(&ended); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("session %s: %w", session, err)
	}
	switch {
	case ok && l.Node != c.node:
		return fmt.Errorf("%w: camera %s is recording on node %s (session %s)", ErrLeaseLost, camera, l.Node, l.Session)
	case ended.Valid:
		return fmt.Errorf("%w: session %s of camera %s ended at %s", ErrLeaseLost, session, camera, ended.T.Format(gapTime))
	}
	return nil
}

// RenewLease extends the lease that session holds on camera to now+ttl,
// or fails with ErrLeaseLost when it holds it no more.
func (c *Catalog) RenewLease(ctx context.Context, camera, session string, now time.Time, ttl time.Duration) error {
	err := c.tx(ctx, func(tx *dbTx) error {
		// Renewed while it names this node and session, expired or not:
		// a late renewal keeps a lease nobody has taken.
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expires_at = ? WHERE camera = ? AND node = ? AND session = ?`, now.Add(ttl), camera, c.node, session)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(fmt.Errorf("%w (session %s of camera %s on node %s)", ErrLeaseLost, session, camera, c.node), err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// releaseLease drops the camera's lease if session holds it (on its end).
func releaseLease(ctx context.Context, tx *dbTx, session string) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE session = ?`, session)
	return err
}

// sessionCamera returns the camera of an incident.
func sessionCamera(ctx context.Context, tx *dbTx, incident string) (string, error) {
	var camera string
	err := tx.QueryRowContext(ctx, `SELECT camera FROM incidents WHERE id = ?`, incident).Scan(&camera)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("incident %q: %w", incident, ErrNotFound)
	}
	return camera, err
}
