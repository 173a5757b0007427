package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AuditRecord is one entry of the hash-chained audit trail.
type AuditRecord struct {
	At       time.Time      `json:"at"`
	Actor    string         `json:"actor"`
	Action   string         `json:"action"`
	Incident string         `json:"incident,omitempty"`
	Details  map[string]any `json:"details,omitempty"`
	Prev     string         `json:"prev"`
}

// AddAudit appends one record to the audit trail on its own (a footage
// view, say); changes that are audited together with what they change use
// appendAudit inside their own transaction.
func (c *Catalog) AddAudit(ctx context.Context, at time.Time, actor, action, incident string, details map[string]any) error {
	if actor == "" || action == "" {
		return errors.New("an audit record needs who and what")
	}
	return c.tx(ctx, func(tx *dbTx) error {
		return appendAudit(ctx, tx, at, actor, action, incident, details)
	})
}

// AuditLines returns the audit trail's records as stored, oldest first.
func (c *Catalog) AuditLines(ctx context.Context) ([][]byte, error) {
	return c.lines(ctx, `SELECT line FROM audit ORDER BY id`)
}

// AuditRow is one audit record as stored: its id (the record's position in
// the trail, from 1), its line and the hash stored beside it. Verification
// needs all three, since whoever tampers may change any of them.
type AuditRow struct {
	ID   uint64
	Line []byte
	Hash string
}

// AuditRows returns the audit trail as stored, by id.
func (c *Catalog) AuditRows(ctx context.Context) ([]AuditRow, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, line, hash FROM audit ORDER BY id`)
	return scanAll(rows, err, "read audit trail", func(sc rowScanner) (AuditRow, error) {
		var r AuditRow
		if err := sc.Scan(&r.ID, &r.Line, &r.Hash); err != nil {
			return r, err
		}
		return r, nil
	})
}

// AuditLastID returns the newest audit record's id (0 when the trail is
// empty), so a periodic signer can tell cheaply whether the trail changed:
// ids are never reused (AUTOINCREMENT), so even a deletion followed by an
// addition moves it.
func (c *Catalog) AuditLastID(ctx context.Context) (uint64, error) {
	var n uint64
	if err := c.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM audit`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read the newest audit record: %w", err)
	}
	return n, nil
}

// AddAuditHead stores a signed audit head (its JSON line) for index. The
// first head signed at an index stands: a later one is ignored, as the
// store's anchor of that index cannot change either.
func (c *Catalog) AddAuditHead(ctx context.Context, index uint64, line []byte) error {
	if _, err := c.db.ExecContext(ctx, `INSERT INTO audit_heads(idx, line) VALUES(?,?) ON CONFLICT(idx) DO NOTHING`, index, line); err != nil {
		return fmt.Errorf("add audit head %d: %w", index, err)
	}
	return nil
}

// AuditHeadLines returns the signed audit heads as stored, by index.
func (c *Catalog) AuditHeadLines(ctx context.Context) ([][]byte, error) {
	return c.lines(ctx, `SELECT line FROM audit_heads ORDER BY idx`)
}
