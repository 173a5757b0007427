// Package catalog is camvault's SQL catalog: cameras, incidents, ingest
// sessions with their wrapped data keys, chunks, manifest records and
// checkpoints, legal holds and deletions, the audit trail, staff accounts,
// export requests, webhook positions and the alert outbox. Every change
// that must be atomic (a chunk row with its manifest record, a session
// with its incident, a change with its audit record) is one transaction.
//
// Two engines run it: embedded SQLite (the default, one file) and
// PostgreSQL (shared by several nodes), chosen by Open's DSN. The queries
// are the same; db.go holds what differs (placeholders, how times are
// stored, row locks), applied where every query passes. The schema is
// versioned (migrate.go, migrations/), and Open brings a catalog to the
// current version, an unversioned SQLite catalog included.
//
// Several nodes may share one PostgreSQL catalog. The alert outbox is then
// their common truth: ids follow commit order (a lock held from an
// alert's insert to its commit), each commit notifies the channel
// camvault_alerts, and WatchAlerts (alerts_watch.go) wakes a reader on
// every node, which reads after the last id it saw; a lost notification
// delays, never loses. Exclusive (singleton.go) keeps a job (the
// retention sweep, the audit-head signer, a webhook URL's delivery) on one
// node at a time with an advisory lock.
//
// One file a concern: this one holds Open, the database and the
// incident manifest's chain; cameras.go, incidents.go (and their
// sessions), chunks.go, intents.go (objects put and not yet committed),
// checkpoints.go (which anchors are written), holds.go, retention.go (due
// chunks, shredding, longer categories, and the audit trail's chain link),
// audit.go, alerts.go (and alerts_watch.go), staff.go, exports.go,
// webhooks.go and singleton.go the rest.
package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"camvault/format/manifest"
)

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("catalog: not found")

// Catalog is the SQL catalog. It is safe for concurrent use.
type Catalog struct {
	node        string // this node's id (WithNode)
	db          *db
	intentBatch intentBatch // RecordIntent's group commit
	wakes       localWakes  // this process's outbox watchers (alerts_watch.go)
	pg          *pgx.ConnConfig
}

// Option adjusts how Open connects.
type Option func(*options)

type options struct{ password, node string }

// DefaultNode is the node id of a catalog opened without WithNode: the
// one node of a catalog that no other node shares.
const DefaultNode = "local"

// WithNode names the node the catalog works for: the sessions it starts
// are this node's, and so are the leases they take (leases.go).
func WithNode(id string) Option { return func(o *options) { o.node = id } }

// WithPassword is the PostgreSQL password, for a caller that read it from
// a file of its own; without it pgx takes PGPASSWORD or the PGPASSFILE
// file (~/.pgpass by default), as libpq does. SQLite ignores it.
func WithPassword(pw string) Option { return func(o *options) { o.password = pw } }

// IsPostgres reports whether dsn names a PostgreSQL catalog (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open opens the catalog dsn names, creating its schema or upgrading it
// to the current version (migrate): a PostgreSQL URL, or else the path of
// a SQLite file, created if needed.
func Open(dsn string, opts ...Option) (*Catalog, error) {
	o := options{node: DefaultNode}
	for _, opt := range opts {
		opt(&o)
	}
	var sdb *sql.DB
	var d *dialect
	var pgcfg *pgx.ConnConfig
	if IsPostgres(dsn) {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			// pgx's message may quote the URL, password and all.
			return nil, errors.New("open catalog: not a valid PostgreSQL URL")
		}
		if o.password != "" {
			cfg.Password = o.password
		}
		sdb, d, pgcfg = stdlib.OpenDB(*cfg), pgDialect, cfg
		sdb.SetMaxOpenConns(16)
	} else {
		var err error
		sdb, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)")
		if err != nil {
			return nil, fmt.Errorf("open catalog %s: %w", dsn, err)
		}
		// One connection: SQLite has one writer anyway, and serialising
		// here avoids SQLITE_BUSY under load.
		sdb.SetMaxOpenConns(1)
		d = sqliteDialect
	}
	if err := migrate(context.Background(), sdb, d); err != nil {
		sdb.Close()
		return nil, err
	}
	return &Catalog{node: o.node, db: &db{DB: sdb, d: d}, pg: pgcfg}, nil
}

// Close closes the database.
func (c *Catalog) Close() error { return c.db.Close() }

// NewID returns a random identifier with a readable prefix.
func NewID(prefix string, now time.Time) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// AppendRecord appends a record (gap, end, ...) to an incident's manifest.
// Index and Prev are filled in. A record of a session fails with
// ErrLeaseLost once the session may no longer write (checkLease).
func (c *Catalog) AppendRecord(ctx context.Context, r manifest.Record) (manifest.Record, error) {
	var out manifest.Record
	err := c.tx(ctx, func(tx *dbTx) error {
		if r.Session != "" {
			if err := c.checkLease(ctx, tx, r.Incident, r.Session); err != nil {
				return err
			}
		}
		var err error
		out, err = appendRecord(ctx, tx, r)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("append %s record to %s: %w", r.Kind, r.Incident, err)
	}
	return out, nil
}

func appendRecord(ctx context.Context, tx *dbTx, r manifest.Record) (manifest.Record, error) {
	var head string
	var next uint64
	if err := tx.QueryRowContext(ctx, `SELECT head, next_index FROM incidents WHERE id = ?`+tx.d.forUpdate, r.Incident).Scan(&head, &next); err != nil {
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
	// A checkpoint stored again replaces the one before, whose anchor is
	// then no longer known to be written.
	if _, err := c.db.ExecContext(ctx, `INSERT INTO checkpoints(incident, idx, line) VALUES(?,?,?)
		ON CONFLICT(incident, idx) DO UPDATE SET line = excluded.line, anchored = NULL`, cp.Incident, cp.Index, line); err != nil {
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

func (c *Catalog) tx(ctx context.Context, fn func(*dbTx) error) error {
	t, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	dtx := &dbTx{tx: t, d: c.db.d}
	if err := fn(dtx); err != nil {
		t.Rollback()
		return err
	}
	if err := t.Commit(); err != nil {
		return err
	}
	if dtx.alerted {
		c.wakes.wake()
	}
	return nil
}
