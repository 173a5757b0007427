// Package catalog is camvault's SQL catalog: cameras, incidents, ingest
// sessions with their wrapped data keys, chunks, manifest records and
// checkpoints, legal holds and deletions, the audit trail, staff accounts,
// export requests, webhook positions and the alert outbox. The embedded
// backend is SQLite; every change that must be atomic (a chunk row with
// its manifest record, a session with its incident, a change with its
// audit record) is one transaction.
//
// One file a concern: this one holds the schema, the database and the
// incident manifest's chain; cameras.go, incidents.go (and their
// sessions), chunks.go, intents.go (objects put and not yet committed),
// checkpoints.go (which anchors are written), holds.go, retention.go (due
// chunks, shredding, longer categories, and the audit trail's chain link),
// audit.go, alerts.go, staff.go, exports.go, webhooks.go the rest.
package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"camvault/format/manifest"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("catalog: not found")

const schema = `
CREATE TABLE IF NOT EXISTS cameras (
	id TEXT PRIMARY KEY,
	officer TEXT NOT NULL,
	secret_mac BLOB NOT NULL,
	created_at TEXT NOT NULL,
	revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS incidents (
	id TEXT PRIMARY KEY,
	camera TEXT NOT NULL REFERENCES cameras(id),
	officer TEXT NOT NULL,
	started_at TEXT NOT NULL,
	ended_at TEXT,
	status TEXT NOT NULL,
	head TEXT NOT NULL,
	next_index INTEGER NOT NULL,
	deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS incidents_camera ON incidents(camera, started_at);
CREATE TABLE IF NOT EXISTS sessions (
	id TEXT PRIMARY KEY,
	incident TEXT NOT NULL REFERENCES incidents(id),
	wrapped_key BLOB NOT NULL,
	started_at TEXT NOT NULL,
	ended_at TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
	incident TEXT NOT NULL REFERENCES incidents(id),
	session TEXT NOT NULL REFERENCES sessions(id),
	track TEXT NOT NULL,
	seq INTEGER NOT NULL,
	object TEXT NOT NULL UNIQUE,
	start_ns INTEGER NOT NULL,
	end_ns INTEGER NOT NULL,
	wall TEXT NOT NULL,
	retain_until TEXT NOT NULL,
	plain_size INTEGER NOT NULL,
	cipher_size INTEGER NOT NULL,
	samples INTEGER NOT NULL DEFAULT 0,
	video_samples INTEGER, -- of samples, the video frames; NULL in catalogs older than the column
	plain_sha256 TEXT NOT NULL,
	cipher_sha256 TEXT NOT NULL,
	deleted_at TEXT,
	PRIMARY KEY (session, track, seq)
);
CREATE TABLE IF NOT EXISTS manifest (
	incident TEXT NOT NULL REFERENCES incidents(id),
	idx INTEGER NOT NULL,
	line BLOB NOT NULL,
	PRIMARY KEY (incident, idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (
	incident TEXT NOT NULL REFERENCES incidents(id),
	idx INTEGER NOT NULL,
	line BLOB NOT NULL,
	anchored INTEGER, -- 1 once its anchor is known to be in the store; NULL in catalogs older than the column
	PRIMARY KEY (incident, idx)
);
CREATE INDEX IF NOT EXISTS chunks_due ON chunks(retain_until) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS holds (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	incident TEXT NOT NULL REFERENCES incidents(id),
	reason TEXT NOT NULL,
	reference TEXT NOT NULL,
	placed_by TEXT NOT NULL,
	placed_at TEXT NOT NULL,
	released_by TEXT,
	released_at TEXT,
	release_reason TEXT
);
CREATE INDEX IF NOT EXISTS holds_active ON holds(incident) WHERE released_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	at TEXT NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	incident TEXT,
	line BLOB NOT NULL,
	hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_heads (
	idx INTEGER PRIMARY KEY,
	line BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	type TEXT NOT NULL,
	camera TEXT NOT NULL,
	incident TEXT,
	at TEXT NOT NULL,
	data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	url TEXT PRIMARY KEY,
	delivered INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_attempt_at TEXT,
	last_error TEXT,
	created_at TEXT NOT NULL
);
`

// Catalog is the SQL catalog. It is safe for concurrent use.
type Catalog struct {
	db          *sql.DB
	intentBatch intentBatch // RecordIntent's group commit
}

// Open opens (creating if needed) the SQLite catalog at path.
func Open(path string) (*Catalog, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and serialising here
	// avoids SQLITE_BUSY under load.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema + intentSchema + staffSchema + exportSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create catalog schema: %w", err)
	}
	if err := addColumn(db, "chunks", "video_samples", "INTEGER"); err != nil {
		db.Close()
		return nil, fmt.Errorf("upgrade catalog schema: %w", err)
	}
	if err := addColumn(db, "checkpoints", "anchored", "INTEGER"); err != nil {
		db.Close()
		return nil, fmt.Errorf("upgrade catalog schema: %w", err)
	}
	return &Catalog{db: db}, nil
}

// addColumn adds a column that a catalog made by an earlier version lacks
// (CREATE TABLE IF NOT EXISTS leaves an existing table as it was). Only
// nullable columns are added this way: rows written before have no value.
func addColumn(db *sql.DB, table, column, typ string) error {
	rows, err := db.Query(`SELECT name FROM pragma_table_info(?)`, table)
	if err != nil {
		return fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return fmt.Errorf("columns of %s: %w", table, err)
		}
		if name == column {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("columns of %s: %w", table, err)
	}
	rows.Close()
	if _, err := db.Exec(`ALTER TABLE ` + table + ` ADD COLUMN ` + column + ` ` + typ); err != nil {
		return fmt.Errorf("add %s.%s: %w", table, column, err)
	}
	return nil
}

// Close closes the database.
func (c *Catalog) Close() error { return c.db.Close() }

// tsLayout has a fixed width, so stored times compare correctly as text
// in SQL (retention queries compare deadlines).
const tsLayout = "2006-01-02T15:04:05.000000000Z"

func ts(t time.Time) string { return t.UTC().Format(tsLayout) }

func parseTS(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// NewID returns a random identifier with a readable prefix.
func NewID(prefix string, now time.Time) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// AppendRecord appends a record (gap, end, ...) to an incident's manifest.
// Index and Prev are filled in.
func (c *Catalog) AppendRecord(ctx context.Context, r manifest.Record) (manifest.Record, error) {
	var out manifest.Record
	err := c.tx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = appendRecord(ctx, tx, r)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("append %s record to %s: %w", r.Kind, r.Incident, err)
	}
	return out, nil
}

func appendRecord(ctx context.Context, tx *sql.Tx, r manifest.Record) (manifest.Record, error) {
	var head string
	var next uint64
	if err := tx.QueryRowContext(ctx, `SELECT head, next_index FROM incidents WHERE id = ?`, r.Incident).Scan(&head, &next); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return r, fmt.Errorf("incident %q: %w", r.Incident, ErrNotFound)
		}
		return r, err
	}
	r.Index = next
	r.Wall = r.Wall.UTC()
	chain := manifest.ChainAt(head)
	line, hash, err := chain.Append(&r)
	if err != nil {
		return r, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO manifest(incident, idx, line) VALUES(?,?,?)`, r.Incident, r.Index, line); err != nil {
		return r, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE incidents SET head = ?, next_index = ? WHERE id = ?`, hash, next+1, r.Incident); err != nil {
		return r, err
	}
	return r, nil
}

// AddCheckpoint stores a signed checkpoint.
func (c *Catalog) AddCheckpoint(ctx context.Context, cp manifest.Checkpoint) error {
	line, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, `INSERT OR REPLACE INTO checkpoints(incident, idx, line) VALUES(?,?,?)`, cp.Incident, cp.Index, line); err != nil {
		return fmt.Errorf("add checkpoint %s/%d: %w", cp.Incident, cp.Index, err)
	}
	return nil
}

// Head returns the incident's manifest head: the last record's index and
// hash (ok=false when the manifest is empty).
func (c *Catalog) Head(ctx context.Context, incident string) (index uint64, hash string, ok bool, err error) {
	var next uint64
	err = c.db.QueryRowContext(ctx, `SELECT head, next_index FROM incidents WHERE id = ?`, incident).Scan(&hash, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, fmt.Errorf("incident %q: %w", incident, ErrNotFound)
	}
	if err != nil || next == 0 {
		return 0, "", false, err
	}
	return next - 1, hash, true, nil
}

// ManifestLines returns the incident's manifest as stored, in order.
func (c *Catalog) ManifestLines(ctx context.Context, incident string) ([][]byte, error) {
	return c.lines(ctx, `SELECT line FROM manifest WHERE incident = ? ORDER BY idx`, incident)
}

// CheckpointLines returns the incident's checkpoints, in order.
func (c *Catalog) CheckpointLines(ctx context.Context, incident string) ([][]byte, error) {
	return c.lines(ctx, `SELECT line FROM checkpoints WHERE incident = ? ORDER BY idx`, incident)
}

// rowScanner is one row: a *sql.Row, or the current row of *sql.Rows.
type rowScanner interface{ Scan(...any) error }

// scanAll reads every row of a query, given what QueryContext returned,
// with scan, in order, and closes the rows before it returns (the one
// connection is then free for the caller's next statement). Every error
// says what was being read.
func scanAll[T any](rows *sql.Rows, err error, what string, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// lines runs a query returning one blob column, in order.
func (c *Catalog) lines(ctx context.Context, q string, args ...any) ([][]byte, error) {
	rows, err := c.db.QueryContext(ctx, q, args...)
	return scanAll(rows, err, fmt.Sprintf("read %v", args), func(sc rowScanner) ([]byte, error) {
		var b []byte
		return b, sc.Scan(&b)
	})
}

// texts runs a query returning one text column, in order.
func (c *Catalog) texts(ctx context.Context, q string, args ...any) ([]string, error) {
	bs, err := c.lines(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out, nil
}

func (c *Catalog) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
