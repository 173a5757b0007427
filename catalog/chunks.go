package catalog

import (
	"context"
	"fmt"
	"time"

	"camvault/format/manifest"
)

// Chunk is a stored chunk's catalog row.
type Chunk struct {
	Incident, Session, Track string
	Seq                      uint64
	Object                   string
	StartNS, EndNS           int64
	Wall, RetainUntil        time.Time
	PlainSize, CipherSize    int64
	Samples                  int64
	// VideoSamples is how many of Samples are video frames. The catalog
	// keeps it for display only; the manifest records Samples alone.
	VideoSamples int64
	PlainSHA256  string
	CipherSHA256 string
}

// CommitChunk makes a stored chunk durable in the catalog: its row and its
// manifest record in one transaction, which also deletes the chunk's
// intent (RecordIntent), so the object is known to the catalog throughout.
// It returns the manifest record. ErrLeaseLost: the session may no longer
// write (checkLease).
func (c *Catalog) CommitChunk(ctx context.Context, ch Chunk) (manifest.Record, error) {
	var rec manifest.Record
	err := c.tx(ctx, func(tx *dbTx) error {
		if err := c.checkLease(ctx, tx, ch.Incident, ch.Session); err != nil {
			return err
		}
		var err error
		rec, err = commitChunk(ctx, tx, ch)
		return err
	})
	if err != nil {
		return rec, fmt.Errorf("commit chunk %s/%s/%d: %w", ch.Session, ch.Track, ch.Seq, err)
	}
	return rec, nil
}

func commitChunk(ctx context.Context, tx *dbTx, ch Chunk) (manifest.Record, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO chunks(incident, session, track, seq, object, start_ns, end_ns, wall, retain_until, plain_size, cipher_size, samples, video_samples, plain_sha256, cipher_sha256)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		ch.Incident, ch.Session, ch.Track, ch.Seq, ch.Object, ch.StartNS, ch.EndNS, ch.Wall, ch.RetainUntil,
		ch.PlainSize, ch.CipherSize, ch.Samples, ch.VideoSamples, ch.PlainSHA256, ch.CipherSHA256); err != nil {
		return manifest.Record{}, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM intents WHERE object = ?`, ch.Object); err != nil {
		return manifest.Record{}, err
	}
	return appendRecord(ctx, tx, manifest.Record{
		Incident: ch.Incident, Kind: manifest.KindChunk, Session: ch.Session, Track: ch.Track, Seq: ch.Seq,
		StartNS: ch.StartNS, EndNS: ch.EndNS, Wall: ch.Wall, PlainSize: ch.PlainSize, CipherSize: ch.CipherSize, Samples: ch.Samples,
		PlainSHA256: ch.PlainSHA256, CipherSHA256: ch.CipherSHA256, Object: ch.Object,
	})
}

// LiveObjects returns the store keys of an incident's chunks not yet deleted.
func (c *Catalog) LiveObjects(ctx context.Context, incident string) ([]string, error) {
	return c.texts(ctx, `SELECT object FROM chunks WHERE incident = ? AND deleted_at IS NULL ORDER BY object`, incident)
}

// LatestDeadline returns the latest deadline among the incident's live
// chunks (zero if it has none).
func (c *Catalog) LatestDeadline(ctx context.Context, incident string) (time.Time, error) {
	var until dbTime
	err := c.db.QueryRowContext(ctx, `SELECT max(retain_until) FROM chunks WHERE incident = ? AND deleted_at IS NULL`, incident).Scan(&until)
	if err != nil || !until.Valid {
		return time.Time{}, err
	}
	return until.T, nil
}
