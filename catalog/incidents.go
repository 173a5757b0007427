package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"camvault/format/manifest"
)

// Incident statuses.
const (
	StatusOpen        = "open"
	StatusClosed      = "closed"      // ended by the camera (TEARDOWN)
	StatusInterrupted = "interrupted" // stream lost or server stopped
)

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
	// Lease is how long the camera's lease, taken for the session, lasts
	// unless renewed (RenewLease); 0 is DefaultLease.
	Lease time.Duration
}

// SessionStarted tells the caller which incident the session belongs to.
type SessionStarted struct {
	Incident string
	Resumed  bool // true: an earlier incident continues
}

// resumes is StartSession's rule: a camera's new session continues its
// latest incident while that is open or ended within the grace window.
func resumes(status string, ended dbTime, now time.Time, grace time.Duration) bool {
	return status == StatusOpen || (ended.Valid && now.Sub(ended.T) <= grace)
}

// Resumable reports whether a session of camera starting at now would
// continue its latest incident rather than open a new one. It only
// reads, so it answers on a full disk too.
func (c *Catalog) Resumable(ctx context.Context, camera string, now time.Time, grace time.Duration) (bool, error) {
	var status string
	var ended dbTime
	err := c.db.QueryRowContext(ctx, `SELECT status, ended_at FROM incidents WHERE camera = ? ORDER BY started_at DESC LIMIT 1`, camera).
		Scan(&status, &ended)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("latest incident of camera %q: %w", camera, err)
	}
	return resumes(status, ended, now, grace), nil
}

// StartSession attaches a new ingest session to the camera's incident:
// the one still open or ended within the grace window, else a new one. It
// records the session (and for a resumed incident the gap) in the manifest
// and queues the incident.started alert for a new incident.
//
// The session takes the camera's lease in the same transaction: refused
// with a *LeaseHeldError (ErrLeaseHeld) while another node's lease is
// live. A lease of another node that expired is taken over: the session
// that held it, left running by a node that stopped renewing it, is ended
// here, as interrupted when its lease expired, before anything of the new
// session; the incident then resumes by the grace rule, from that end,
// with the reconnect gap from its last durable footage.
func (c *Catalog) StartSession(ctx context.Context, s SessionStart) (SessionStarted, error) {
	var out SessionStarted
	ttl := s.Lease
	if ttl <= 0 {
		ttl = DefaultLease
	}
	err := c.tx(ctx, func(tx *dbTx) error {
		// The camera's row, locked where the engine has row locks: two
		// sessions of one camera starting at once choose its incident one
		// after the other.
		if _, err := tx.ExecContext(ctx, `SELECT id FROM cameras WHERE id = ?`+tx.d.forUpdate, s.Camera); err != nil {
			return err
		}
		old, replaced, err := c.acquireLease(ctx, tx, s.Camera, s.Session, s.Now, ttl)
		if err != nil {
			return err
		}
		if replaced && old.Node != c.node {
			if err := c.endStale(ctx, tx, old); err != nil {
				return err
			}
		}
		var id, status string
		var ended dbTime
		err = tx.QueryRowContext(ctx, `SELECT id, status, ended_at FROM incidents WHERE camera = ? ORDER BY started_at DESC LIMIT 1`, s.Camera).
			Scan(&id, &status, &ended)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case resumes(status, ended, s.Now, s.Grace):
			out = SessionStarted{Incident: id, Resumed: true}
		}
		if out.Incident == "" {
			out.Incident = NewID("inc-", s.Now)
			if _, err := tx.ExecContext(ctx, `INSERT INTO incidents(id, camera, officer, started_at, status, head, next_index) VALUES(?,?,?,?,?,?,0)`,
				out.Incident, s.Camera, s.Officer, s.Now, StatusOpen, manifest.Genesis); err != nil {
				return err
			}
			if err := insertAlert(ctx, tx, "incident.started", s.Camera, out.Incident, s.Now, map[string]any{"officer": s.Officer}); err != nil {
				return err
			}
		} else {
			gap := manifest.Record{Incident: out.Incident, Kind: manifest.KindGap, Wall: s.Now, Note: "ingest session replaced while the incident was open"}
			if ended.Valid {
				// The hole runs from the end of the last footage that became
				// durable, not from when the session was ended: a session a
				// crash left running is ended only at the restart, and a
				// vanished camera only once its stream timed out.
				from := ended.T
				last, ok, err := lastDurable(ctx, tx, out.Incident, "")
				if err != nil {
					return err
				}
				if ok {
					from = last.EndWall
					last.fill(&gap)
				}
				to := s.Now.UTC()
				gap.ToWall = &to
				gap.Note = fmt.Sprintf("reconnect after %s: no footage from %s to %s", s.Now.Sub(from).Round(time.Millisecond),
					from.UTC().Format(gapTime), to.Format(gapTime))
			}
			if _, err := appendRecord(ctx, tx, gap); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ?, ended_at = NULL WHERE id = ?`, StatusOpen, out.Incident); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions(id, incident, wrapped_key, started_at, node) VALUES(?,?,?,?,?)`,
			s.Session, out.Incident, s.WrappedKey, s.Now, c.node); err != nil {
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

// EndSession records the end of an ingest session, and ends the incident
// with status unless another session of it is still running. The session
// releases its camera's lease. ErrLeaseLost: the session was taken over
// (and ended) by another node, which wrote its end.
func (c *Catalog) EndSession(ctx context.Context, incident, session string, now time.Time, status, note string) (manifest.Record, error) {
	var rec manifest.Record
	err := c.tx(ctx, func(tx *dbTx) error {
		if err := c.checkLease(ctx, tx, incident, session); err != nil {
			return err
		}
		var err error
		rec, err = endSession(ctx, tx, incident, session, now, status, note)
		return err
	})
	if err != nil {
		return rec, fmt.Errorf("end session %s: %w", session, err)
	}
	return rec, nil
}

func endSession(ctx context.Context, tx *dbTx, incident, session string, now time.Time, status, note string) (manifest.Record, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL`, now, session); err != nil {
		return manifest.Record{}, err
	}
	if err := releaseLease(ctx, tx, session); err != nil {
		return manifest.Record{}, err
	}
	rec, err := appendRecord(ctx, tx, manifest.Record{Incident: incident, Kind: manifest.KindEnd, Session: session, Wall: now, Note: status + ": " + note})
	if err != nil {
		return rec, err
	}
	var running int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sessions WHERE incident = ? AND ended_at IS NULL`, incident).Scan(&running); err != nil {
		return rec, err
	}
	if running > 0 {
		return rec, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE incidents SET status = ?, ended_at = ? WHERE id = ?`, status, now, incident); err != nil {
		return rec, err
	}
	var camera string
	if err := tx.QueryRowContext(ctx, `SELECT camera FROM incidents WHERE id = ?`, incident).Scan(&camera); err != nil {
		return rec, err
	}
	typ := "incident.ended"
	if status == StatusInterrupted {
		typ = "incident.interrupted"
	}
	return rec, insertAlert(ctx, tx, typ, camera, incident, now, map[string]any{"note": note})
}

// endStale ends the session whose expired lease another node's session
// takes over, if it is still running: its node stopped renewing it (a
// crash, a lost network) and never ended it. It ends when its lease
// expired, the last moment it was allowed to write; its node, if it comes
// back, finds it ended and leaves it (InterruptRunning settles running
// sessions only), and any write it still tries fails with ErrLeaseLost.
func (c *Catalog) endStale(ctx context.Context, tx *dbTx, l lease) error {
	var incident string
	var ended dbTime
	err := tx.QueryRowContext(ctx, `SELECT incident, ended_at FROM sessions WHERE id = ?`, l.Session).Scan(&incident, &ended)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && ended.Valid) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("session %s of the expired lease: %w", l.Session, err)
	}
	note := fmt.Sprintf("node %s stopped renewing the camera's lease, which expired at %s; node %s took the camera over",
		l.Node, l.Expires.UTC().Format(gapTime), c.node)
	_, err = endSession(ctx, tx, incident, l.Session, l.Expires, StatusInterrupted, note)
	return err
}

// InterruptRunning marks sessions of this node left running by a crash as
// ended, with a gap record each, and returns their incidents. It runs at
// start-up, before ingest. Another node's sessions are not its to settle,
// and one of its own that another node took over meanwhile was ended by
// the takeover (endStale), in the chain's order, so it is not running.
// Sessions recorded before nodes were (node NULL) are this node's: such
// a catalog had one. So is every session of a SQLite catalog, which no
// other node opens, whatever its node was called.
func (c *Catalog) InterruptRunning(ctx context.Context, now time.Time) ([]string, error) {
	type pair struct{ session, incident string }
	rows, err := c.db.QueryContext(ctx, `SELECT id, incident FROM sessions WHERE ended_at IS NULL AND (node = ? OR node IS NULL OR ?)`,
		c.node, !c.db.d.shared)
	open, err := scanAll(rows, err, "find running sessions", func(sc rowScanner) (pair, error) {
		var p pair
		return p, sc.Scan(&p.session, &p.incident)
	})
	if err != nil {
		return nil, err
	}
	var incidents []string
	for _, p := range open {
		gap, err := c.crashGap(ctx, p.incident, p.session, now)
		if err != nil {
			return nil, err
		}
		settled := false
		err = c.tx(ctx, func(tx *dbTx) error {
			// Checked again under the lease row's lock: a takeover that
			// ended the session since it was listed settled it.
			if !tx.d.shared {
				// The lease may name this node by its old name.
			} else if err := c.checkLease(ctx, tx, p.incident, p.session); errors.Is(err, ErrLeaseLost) {
				return nil
			} else if err != nil {
				return err
			}
			if _, err := appendRecord(ctx, tx, gap); err != nil {
				return err
			}
			if _, err := endSession(ctx, tx, p.incident, p.session, now, StatusInterrupted, "server restart"); err != nil {
				return err
			}
			settled = true
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("settle session %s left running: %w", p.session, err)
		}
		if settled {
			incidents = append(incidents, p.incident)
		}
	}
	return incidents, nil
}

// crashGap is the gap record of a session a crash left running: from the
// end of its last durable chunk (or its start) to the restart at now, the
// only times known; the crash itself left no trace. Seq is the first
// sequence number not durable, StartNS and EndNS the media time from the
// last durable chunk's end to where the session would have been at the
// restart (an upper bound of what was lost).
func (c *Catalog) crashGap(ctx context.Context, incident, session string, now time.Time) (manifest.Record, error) {
	var gap manifest.Record
	err := c.tx(ctx, func(tx *dbTx) error {
		var err error
		gap, err = lostGap(ctx, tx, incident, session, now, "server stopped without ending the session",
			"the restart at "+now.UTC().Format(gapTime))
		return err
	})
	return gap, err
}

// lostGap is the gap record of a session that stopped without a trace at
// some point before now: from its last durable chunk (or its start) to
// now. cause says why it stopped, until what now is ("the restart at …").
func lostGap(ctx context.Context, tx *dbTx, incident, session string, now time.Time, cause, until string) (manifest.Record, error) {
	now = now.UTC()
	gap := manifest.Record{Incident: incident, Kind: manifest.KindGap, Session: session, Wall: now, ToWall: &now}
	last, ok, err := lastDurable(ctx, tx, incident, session)
	if err == nil && !ok {
		var started dbTime
		err = tx.QueryRowContext(ctx, `SELECT started_at FROM sessions WHERE id = ?`, session).Scan(&started)
		last = durablePoint{Session: session, EndWall: started.T}
	}
	if err != nil {
		return gap, fmt.Errorf("crash gap of session %s: %w", session, err)
	}
	last.fill(&gap)
	gap.Seq, gap.StartNS = last.Seq+1, last.EndNS
	gap.EndNS = last.EndNS + int64(max(now.Sub(last.EndWall), 0))
	what := fmt.Sprintf("no segment of it was durable (it started %s)", last.EndWall.Format(gapTime))
	if last.Seq > 0 {
		what = fmt.Sprintf("nothing after segment %d (ending %s) was durable", last.Seq, last.EndWall.Format(gapTime))
	}
	gap.Note = fmt.Sprintf("%s: the segment being cut was lost; %s, and nothing up to %s", cause, what, until)
	return gap, nil
}

// gapTime is how gap notes write wall-clock times: to the millisecond, UTC.
const gapTime = "2006-01-02T15:04:05.000Z"

// durablePoint is where the last durable chunk of the original track ends.
type durablePoint struct {
	Session string
	Seq     uint64 // 0: only the init segment (or, from crashGap, nothing)
	EndNS   int64
	EndWall time.Time
}

// fill writes the point into a gap record's from_* fields.
func (p durablePoint) fill(gap *manifest.Record) {
	w := p.EndWall.UTC()
	gap.FromSession, gap.FromSeq, gap.FromNS, gap.FromWall = p.Session, p.Seq, p.EndNS, &w
}

// lastDurable finds the last committed chunk of the original track of
// the incident, or of one session when session is not empty. A chunk's
// wall is the wall-clock time of its start, so its end is wall plus its
// media duration.
func lastDurable(ctx context.Context, tx *dbTx, incident, session string) (durablePoint, bool, error) {
	var p durablePoint
	var wall dbTime
	var startNS int64
	err := tx.QueryRowContext(ctx, `SELECT session, seq, start_ns, end_ns, wall FROM chunks
		WHERE incident = ? AND (? = '' OR session = ?) AND track = 'original' ORDER BY wall DESC, seq DESC LIMIT 1`,
		incident, session, session).Scan(&p.Session, &p.Seq, &startNS, &p.EndNS, &wall)
	if errors.Is(err, sql.ErrNoRows) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("last durable chunk of %s: %w", incident, err)
	}
	p.EndWall = wall.T.Add(time.Duration(p.EndNS - startNS))
	return p, true, nil
}

// WrappedKeys returns the incident's wrapped session keys by session id.
func (c *Catalog) WrappedKeys(ctx context.Context, incident string) (map[string][]byte, error) {
	type wrapped struct {
		session string
		key     []byte
	}
	rows, err := c.db.QueryContext(ctx, `SELECT id, wrapped_key FROM sessions WHERE incident = ?`, incident)
	all, err := scanAll(rows, err, "wrapped keys of "+incident, func(sc rowScanner) (wrapped, error) {
		var w wrapped
		return w, sc.Scan(&w.session, &w.key)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(all))
	for _, w := range all {
		out[w.session] = w.key
	}
	return out, nil
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
	// VideoFrames and AudioFrames split Samples by kind, when FramesKnown:
	// chunks recorded before the catalog kept the split leave it unknown.
	VideoFrames int64 `json:"video_frames"`
	AudioFrames int64 `json:"audio_frames"`
	FramesKnown bool  `json:"frames_known"`
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
		(SELECT coalesce(sum(video_samples),0) FROM chunks WHERE incident = i.id),
		NOT EXISTS (SELECT 1 FROM chunks WHERE incident = i.id AND samples > 0 AND video_samples IS NULL),
		(SELECT max(retain_until) FROM chunks WHERE incident = i.id AND deleted_at IS NULL),
		EXISTS (SELECT 1 FROM holds WHERE incident = i.id AND released_at IS NULL)
		FROM incidents i ORDER BY i.started_at DESC`)
	return scanAll(rows, err, "list incidents", func(sc rowScanner) (Incident, error) {
		var in Incident
		var started, ended, until dbTime
		if err := sc.Scan(&in.ID, &in.Camera, &in.Officer, &started, &ended, &in.Status, &in.Records, &in.Chunks, &in.Bytes, &in.Samples,
			&in.VideoFrames, &in.FramesKnown, &until, &in.Held); err != nil {
			return in, err
		}
		if in.FramesKnown {
			in.AudioFrames = in.Samples - in.VideoFrames
		} else {
			in.VideoFrames = 0
		}
		in.StartedAt, in.EndedAt, in.RetainUntil = started.T, ended.ptr(), until.ptr()
		return in, nil
	})
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

// StatusDeleted marks an incident removed by retention: chunks deleted,
// wrapped keys destroyed.
const StatusDeleted = "deleted"

// liveIncident returns the incident's camera, or an error if it does not
// exist or was deleted.
func liveIncident(ctx context.Context, tx *dbTx, incident string) (string, error) {
	var camera string
	var deleted dbTime
	err := tx.QueryRowContext(ctx, `SELECT camera, deleted_at FROM incidents WHERE id = ?`+tx.d.forUpdate, incident).Scan(&camera, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("incident %q: %w", incident, ErrNotFound)
	}
	if err != nil {
		return "", err
	}
	if deleted.Valid {
		return "", fmt.Errorf("%w on %s", ErrDeleted, deleted.T.Format("2006-01-02"))
	}
	return camera, nil
}

// DeletedAt reports when retention deleted the incident (zero if not).
func (c *Catalog) DeletedAt(ctx context.Context, incident string) (time.Time, error) {
	var deleted dbTime
	err := c.db.QueryRowContext(ctx, `SELECT deleted_at FROM incidents WHERE id = ?`, incident).Scan(&deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("incident %q: %w", incident, ErrNotFound)
	}
	if err != nil || !deleted.Valid {
		return time.Time{}, err
	}
	return deleted.T, nil
}
