package catalog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// ErrNodeKeyMismatch refuses a node whose id is registered with another
// public key: two machines given one id, or a node whose key was replaced.
// Either would let checkpoints of one incident be signed by keys an
// auditor cannot tell apart by the node they name.
var ErrNodeKeyMismatch = errors.New("node id is registered with a different public key")

// ErrStoreMismatch refuses a node whose chunk store is not the one the
// other nodes of the catalog use: a shared catalog needs a shared store,
// or chunks committed by one node are missing on every other.
var ErrStoreMismatch = errors.New("the catalog is used with a different chunk store")

// Node is the catalog's name of this catalog's node: the one whose
// sessions it starts, whose leases it holds and whose crash it settles.
func (c *Catalog) Node() string { return c.node }

// Shared says whether several nodes may open this catalog (PostgreSQL):
// only then are there other nodes' sessions to settle.
func (c *Catalog) Shared() bool { return c.db.d.shared }

// RegisterNode records this node's checkpoint public key at start, or
// confirms the one registered, and updates when it was last seen.
func (c *Catalog) RegisterNode(ctx context.Context, pub ed25519.PublicKey, now time.Time) error {
	err := c.tx(ctx, func(tx *dbTx) error {
		var known []byte
		err := tx.QueryRowContext(ctx, `SELECT public_key FROM nodes WHERE id = ?`+tx.d.forUpdate, c.node).Scan(&known)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO nodes(id, public_key, first_seen, last_seen) VALUES(?,?,?,?)`, c.node, []byte(pub), now, now)
			return err
		case err != nil:
			return err
		case !bytes.Equal(known, pub):
			return fmt.Errorf("%w (registered %s, this node's %s)", ErrNodeKeyMismatch,
				base64.StdEncoding.EncodeToString(known), base64.StdEncoding.EncodeToString(pub))
		}
		_, err = tx.ExecContext(ctx, `UPDATE nodes SET last_seen = ? WHERE id = ?`, now, c.node)
		return err
	})
	if err != nil {
		return fmt.Errorf("register node %q: %w", c.node, err)
	}
	return nil
}

// NodeKeys returns every registered node's public key by node id.
func (c *Catalog) NodeKeys(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	type row struct {
		id  string
		pub []byte
	}
	rows, err := c.db.QueryContext(ctx, `SELECT id, public_key FROM nodes ORDER BY id`)
	all, err := scanAll(rows, err, "node keys", func(sc rowScanner) (row, error) {
		var r row
		return r, sc.Scan(&r.id, &r.pub)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]ed25519.PublicKey, len(all))
	for _, r := range all {
		out[r.id] = ed25519.PublicKey(r.pub)
	}
	return out, nil
}

// UseStore records store (a description of the chunk store: its kind and
// where it is, never a secret) as the catalog's at the first start of
// any node, and refuses a node that names another one.
func (c *Catalog) UseStore(ctx context.Context, store string) error {
	err := c.tx(ctx, func(tx *dbTx) error {
		var known string
		err := tx.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = 'store'`+tx.d.forUpdate).Scan(&known)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO settings(key, value) VALUES('store', ?)`, store)
			return err
		case err != nil:
			return err
		case known != store:
			return fmt.Errorf("%w: the catalog's nodes use %s, this node %s", ErrStoreMismatch, known, store)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("chunk store of node %q: %w", c.node, err)
	}
	return nil
}
