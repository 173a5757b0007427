// Package catalog is camvault's SQL catalog: cameras, incidents, ingest
// sessions with their wrapped data keys, chunks, manifest records,
// checkpoints and the alert outbox. The embedded backend is SQLite; every
// change that must be atomic (a chunk row with its manifest record, a
// session with its incident) is one transaction.
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

// Incident statuses.
const (
	StatusOpen        = "open"
	StatusClosed      = "closed"      // ended by the camera (TEARDOWN)
	StatusInterrupted = "interrupted" // stream lost or server stopped
)

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
	db *sql.DB
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
	if _, err := db.Exec(schema + staffSchema + exportSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create catalog schema: %w", err)
	}
	return &Catalog{db: db}, nil
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
	var created string
	var revoked sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT id, officer, secret_mac, created_at, revoked_at FROM cameras WHERE id = ?`, id).
		Scan(&cam.ID, &cam.Officer, &cam.SecretMAC, &created, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return cam, fmt.Errorf("camera %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return cam, fmt.Errorf("camera %q: %w", id, err)
	}
	cam.CreatedAt = parseTS(created)
	cam.Revoked = revoked.Valid
	return cam, nil
}

// CameraCount returns the number of registered cameras.
func (c *Catalog) CameraCount(ctx context.Context) (int, error) {
	var n int
	err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM cameras`).Scan(&n)
	return n, err
}

// SessionStart is what StartSession needs to know.
type SessionStart struct {
	Camera     string
	Officer    string
	Session    string
	WrappedKey []byte
	Now        time.Time
	// Grace is how long after an incident ended a new session of the same
	// camera continues it instead of opening a new one.
	Grace time.Duration
}

// SessionStarted tells the caller which incident the session belongs to.
type SessionStarted struct {
	Incident string
	Resumed  bool // true: an earlier incident continues
}

// StartSession attaches a new ingest session to the camera's incident:
// the one still open or ended within the grace window, else a new one. It
// records the session (and for a resumed incident the gap) in the manifest
// and queues the incident.started alert for a new incident.
func (c *Catalog) StartSession(ctx context.Context, s SessionStart) (SessionStarted, error) {
	var out SessionStarted
	err := c.tx(ctx, func(tx *sql.Tx) error {
		var id, status string
		var ended sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT id, status, ended_at FROM incidents WHERE camera = ? ORDER BY started_at DESC LIMIT 1`, s.Camera).
			Scan(&id, &status, &ended)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case status == StatusOpen || (ended.Valid && s.Now.Sub(parseTS(ended.String)) <= s.Grace):
			out = SessionStarted{Incident: id, Resumed: true}
		}
		if out.Incident == "" {
			out.Incident = NewID("inc-", s.Now)
			if _, err := tx.ExecContext(ctx, `INSERT INTO incidents(id, camera, officer, started_at, status, head, next_index) VALUES(?,?,?,?,?,?,0)`,
				out.Incident, s.Camera, s.Officer, ts(s.Now), StatusOpen, manifest.Genesis); err != nil {
				return err
			}
			if err := insertAlert(ctx, tx, "incident.started", s.Camera, out.Incident, s.Now, map[string]any{"officer": s.Officer}); err != nil {
				return err
			}
		} else {
			note := "ingest session replaced while the incident was open"
			if ended.Valid {
				note = "reconnect after " + s.Now.Sub(parseTS(ended.String)).Round(time.Millisecond).String()
			}
			if _, err := appendRecord(ctx, tx, manifest.Record{Incident: out.Incident, Kind: manifest.KindGap, Wall: s.Now, Note: note}); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ?, ended_at = NULL WHERE id = ?`, StatusOpen, out.Incident); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions(id, incident, wrapped_key, started_at) VALUES(?,?,?,?)`,
			s.Session, out.Incident, s.WrappedKey, ts(s.Now)); err != nil {
			return err
		}
		_, err = appendRecord(ctx, tx, manifest.Record{Incident: out.Incident, Kind: manifest.KindSession, Session: s.Session, Wall: s.Now})
		return err
	})
	if err != nil {
		return out, fmt.Errorf("start session for camera %q: %w", s.Camera, err)
	}
	return out, nil
}

// Chunk is a stored chunk's catalog row.
type Chunk struct {
	Incident, Session, Track string
	Seq                      uint64
	Object                   string
	StartNS, EndNS           int64
	Wall, RetainUntil        time.Time
	PlainSize, CipherSize    int64
	Samples                  int64
	PlainSHA256              string
	CipherSHA256             string
}

// CommitChunk makes a stored chunk durable in the catalog: its row and its
// manifest record in one transaction. It returns the manifest record.
func (c *Catalog) CommitChunk(ctx context.Context, ch Chunk) (manifest.Record, error) {
	var rec manifest.Record
	err := c.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO chunks(incident, session, track, seq, object, start_ns, end_ns, wall, retain_until, plain_size, cipher_size, samples, plain_sha256, cipher_sha256)
			VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			ch.Incident, ch.Session, ch.Track, ch.Seq, ch.Object, ch.StartNS, ch.EndNS, ts(ch.Wall), ts(ch.RetainUntil),
			ch.PlainSize, ch.CipherSize, ch.Samples, ch.PlainSHA256, ch.CipherSHA256); err != nil {
			return err
		}
		var err error
		rec, err = appendRecord(ctx, tx, manifest.Record{
			Incident: ch.Incident, Kind: manifest.KindChunk, Session: ch.Session, Track: ch.Track, Seq: ch.Seq,
			StartNS: ch.StartNS, EndNS: ch.EndNS, Wall: ch.Wall, PlainSize: ch.PlainSize, CipherSize: ch.CipherSize, Samples: ch.Samples,
			PlainSHA256: ch.PlainSHA256, CipherSHA256: ch.CipherSHA256, Object: ch.Object,
		})
		return err
	})
	if err != nil {
		return rec, fmt.Errorf("commit chunk %s/%s/%d: %w", ch.Session, ch.Track, ch.Seq, err)
	}
	return rec, nil
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

// EndSession records the end of an ingest session, and ends the incident
// with status unless another session of it is still running.
func (c *Catalog) EndSession(ctx context.Context, incident, session string, now time.Time, status, note string) (manifest.Record, error) {
	var rec manifest.Record
	err := c.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL`, ts(now), session); err != nil {
			return err
		}
		var err error
		rec, err = appendRecord(ctx, tx, manifest.Record{Incident: incident, Kind: manifest.KindEnd, Session: session, Wall: now, Note: status + ": " + note})
		if err != nil {
			return err
		}
		var running int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE incident = ? AND ended_at IS NULL`, incident).Scan(&running); err != nil {
			return err
		}
		if running > 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ?, ended_at = ? WHERE id = ?`, status, ts(now), incident); err != nil {
			return err
		}
		var camera string
		if err := tx.QueryRowContext(ctx, `SELECT camera FROM incidents WHERE id = ?`, incident).Scan(&camera); err != nil {
			return err
		}
		typ := "incident.ended"
		if status == StatusInterrupted {
			typ = "incident.interrupted"
		}
		return insertAlert(ctx, tx, typ, camera, incident, now, map[string]any{"note": note})
	})
	if err != nil {
		return rec, fmt.Errorf("end session %s: %w", session, err)
	}
	return rec, nil
}

// InterruptRunning marks sessions left running by a crash as ended, with a
// gap record each, and returns their incidents. It runs at start-up, before
// ingest.
func (c *Catalog) InterruptRunning(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, incident FROM sessions WHERE ended_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("find running sessions: %w", err)
	}
	type pair struct{ session, incident string }
	var open []pair
	for rows.Next() {
		var p pair
		if err := rows.Scan(&p.session, &p.incident); err != nil {
			rows.Close()
			return nil, err
		}
		open = append(open, p)
	}
	rows.Close()
	var incidents []string
	for _, p := range open {
		if _, err := c.AppendRecord(ctx, manifest.Record{Incident: p.incident, Kind: manifest.KindGap, Session: p.session, Wall: now,
			Note: "server stopped without ending the session: the segment being cut was lost"}); err != nil {
			return nil, err
		}
		if _, err := c.EndSession(ctx, p.incident, p.session, now, StatusInterrupted, "server restart"); err != nil {
			return nil, err
		}
		incidents = append(incidents, p.incident)
	}
	return incidents, nil
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

// lines runs a query returning one blob column, in order.
func (c *Catalog) lines(ctx context.Context, q string, args ...any) ([][]byte, error) {
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read %v: %w", args, err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
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

// WrappedKeys returns the incident's wrapped session keys by session id.
func (c *Catalog) WrappedKeys(ctx context.Context, incident string) (map[string][]byte, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, wrapped_key FROM sessions WHERE incident = ?`, incident)
	if err != nil {
		return nil, fmt.Errorf("wrapped keys of %s: %w", incident, err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var k []byte
		if err := rows.Scan(&id, &k); err != nil {
			return nil, err
		}
		out[id] = k
	}
	return out, rows.Err()
}

// Incident is an incident's catalog row.
type Incident struct {
	ID        string     `json:"id"`
	Camera    string     `json:"camera"`
	Officer   string     `json:"officer"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Status    string     `json:"status"`
	Chunks    int        `json:"chunks"`
	Bytes     int64      `json:"bytes"`
	Samples   int64      `json:"samples"` // access units durable, all tracks
	// RetainUntil is the incident's deadline: the latest of its live
	// chunks'. Held says a legal hold suspends it.
	RetainUntil *time.Time `json:"retain_until,omitempty"`
	Held        bool       `json:"held"`
	Records     uint64     `json:"manifest_records"`
}

// Incidents lists incidents, newest first.
func (c *Catalog) Incidents(ctx context.Context) ([]Incident, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT i.id, i.camera, i.officer, i.started_at, i.ended_at, i.status, i.next_index,
		(SELECT count(*) FROM chunks WHERE incident = i.id), (SELECT coalesce(sum(cipher_size),0) FROM chunks WHERE incident = i.id),
		(SELECT coalesce(sum(samples),0) FROM chunks WHERE incident = i.id),
		(SELECT max(retain_until) FROM chunks WHERE incident = i.id AND deleted_at IS NULL),
		EXISTS (SELECT 1 FROM holds WHERE incident = i.id AND released_at IS NULL)
		FROM incidents i ORDER BY i.started_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list incidents: %w", err)
	}
	defer rows.Close()
	var out []Incident
	for rows.Next() {
		var in Incident
		var started string
		var ended, until sql.NullString
		if err := rows.Scan(&in.ID, &in.Camera, &in.Officer, &started, &ended, &in.Status, &in.Records, &in.Chunks, &in.Bytes, &in.Samples, &until, &in.Held); err != nil {
			return nil, err
		}
		if until.Valid {
			t := parseTS(until.String)
			in.RetainUntil = &t
		}
		in.StartedAt = parseTS(started)
		if ended.Valid {
			t := parseTS(ended.String)
			in.EndedAt = &t
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// Incident returns one incident.
func (c *Catalog) Incident(ctx context.Context, id string) (Incident, error) {
	all, err := c.Incidents(ctx)
	if err != nil {
		return Incident{}, err
	}
	for _, in := range all {
		if in.ID == id {
			return in, nil
		}
	}
	return Incident{}, fmt.Errorf("incident %q: %w", id, ErrNotFound)
}

// Alert is an outbox entry.
type Alert struct {
	ID       int64          `json:"id"`
	Type     string         `json:"type"`
	Camera   string         `json:"camera"`
	Incident string         `json:"incident,omitempty"`
	At       time.Time      `json:"at"`
	Data     map[string]any `json:"data,omitempty"`
}

func insertAlert(ctx context.Context, tx *sql.Tx, typ, camera, incident string, at time.Time, data map[string]any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO alerts(type, camera, incident, at, data) VALUES(?,?,?,?,?)`, typ, camera, incident, ts(at), string(b))
	return err
}

// AddAlert writes one event to the outbox on its own: events that are not
// part of a larger change (a camera's warning or location, shed derived
// work, a degraded store).
func (c *Catalog) AddAlert(ctx context.Context, typ, camera, incident string, at time.Time, data map[string]any) error {
	return c.tx(ctx, func(tx *sql.Tx) error {
		return insertAlert(ctx, tx, typ, camera, incident, at, data)
	})
}

// AlertsAfter returns outbox entries with id > after, oldest first.
func (c *Catalog) AlertsAfter(ctx context.Context, after int64, limit int) ([]Alert, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, type, camera, coalesce(incident,''), at, data FROM alerts WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		var a Alert
		var at, data string
		if err := rows.Scan(&a.ID, &a.Type, &a.Camera, &a.Incident, &at, &data); err != nil {
			return nil, err
		}
		a.At = parseTS(at)
		_ = json.Unmarshal([]byte(data), &a.Data)
		out = append(out, a)
	}
	return out, rows.Err()
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

// LookupCamera returns what camera authentication needs.
func (c *Catalog) LookupCamera(ctx context.Context, id string) (officer string, secretMAC []byte, revoked bool, err error) {
	cam, err := c.Camera(ctx, id)
	if err != nil {
		return "", nil, false, err
	}
	return cam.Officer, cam.SecretMAC, cam.Revoked, nil
}
