package commit

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"camvault/catalog"
	"camvault/media"
	"camvault/pipeline"
)

// AlertTranscodeShed is the alert raised, once per incident, the first
// time its derived work is shed.
const AlertTranscodeShed = "transcode.shed"

// Alerter queues an alert for the backoffice at most once per incident.
type Alerter interface {
	AlertOnce(ctx context.Context, typ, incident string, at time.Time, data map[string]any) (bool, error)
}

// Stage returns the commit stage. It is serial and in order: a session's
// chunks, gaps and end reach the manifest in the order they were cut,
// which is what makes the hash chain a faithful record of the stream.
func (c *Committer) Stage() pipeline.Stage[*media.Item, struct{}] {
	return pipeline.Stage[*media.Item, struct{}]{Name: "commit", Workers: 1, Ordered: true, Fn: c.commit}
}

func (c *Committer) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c *Committer) commit(ctx context.Context, it *media.Item) (struct{}, error) {
	h := it.Header
	switch {
	case it.Kind == media.ItemEnd:
		if c.Ended != nil {
			defer c.Ended(h.Session)
		}
		delete(c.shedAlerted, h.Incident) // the catalog remembers the alert from now on
		if err := c.End(ctx, h.Incident, h.Session, it.EndStatus, it.Note); errors.Is(err, ErrNotAnchored) {
			// The end and its signed checkpoint are committed; a
			// Reanchorer writes the anchor once the store takes it.
			c.logger().Warn("session end committed, checkpoint not anchored yet", "incident", h.Incident, "err", err)
			return struct{}{}, err
		} else if err != nil {
			c.logger().Error("commit session end", "incident", h.Incident, "err", err)
			return struct{}{}, err
		}
		return struct{}{}, nil
	case it.Kind == media.ItemGap:
		if err := c.gap(ctx, h, it.Note); err != nil {
			return struct{}{}, err
		}
		if it.Shed {
			c.alertShed(ctx, it)
		}
		return struct{}{}, nil
	case it.Err != nil:
		c.logger().Error("segment lost", "incident", h.Incident, "seq", h.Seq, "err", it.Err)
		err := c.gap(ctx, h, "segment lost: "+it.Err.Error())
		return struct{}{}, err
	}
	rec, err := c.Chunk(ctx, catalog.Chunk{
		Incident: h.Incident, Session: h.Session, Track: h.Track, Seq: h.Seq, Object: it.Object,
		StartNS: h.StartNS, EndNS: h.EndNS, Wall: h.Wall, RetainUntil: h.RetainUntil,
		PlainSize: int64(it.Sealed.PlainSize), CipherSize: int64(it.CipherSize), Samples: int64(it.Samples),
		VideoSamples: int64(it.VideoSamples),
		PlainSHA256:  hex.EncodeToString(it.Sealed.PlainSHA256[:]), CipherSHA256: hex.EncodeToString(it.Sealed.CipherSHA256[:]),
	})
	if err != nil && rec.Kind != "" {
		// Committed; the checkpoint after it failed (the next one covers it).
		c.logger().Error("checkpoint after chunk", "incident", h.Incident, "seq", h.Seq, "err", err)
		return struct{}{}, err
	}
	if err != nil {
		// The object is stored and its intent stays (the commit's
		// transaction, which deletes it, did not happen): the next
		// start's reconcile or the sweeper settles it. Here the
		// manifest records that the segment is not in it.
		c.logger().Error("commit chunk", "incident", h.Incident, "seq", h.Seq, "err", err)
		if gerr := c.gap(ctx, h, "segment stored but not committed: "+err.Error()); gerr != nil {
			return struct{}{}, errors.Join(err, gerr)
		}
		return struct{}{}, err
	}
	if c.Durable != nil {
		c.Durable(it, c.Now())
	}
	return struct{}{}, nil
}

// alertShed raises transcode.shed the first time an incident's derived
// work is shed; the catalog keeps it to once per incident across
// sessions, this map spares it the query for every later shed job.
func (c *Committer) alertShed(ctx context.Context, it *media.Item) {
	h := it.Header
	if c.Alerts == nil || c.shedAlerted[h.Incident] {
		return
	}
	if _, err := c.Alerts.AlertOnce(ctx, AlertTranscodeShed, h.Incident, c.Now(), map[string]any{"note": it.Note, "track": h.Track, "seq": h.Seq}); err != nil {
		c.logger().Error("transcode.shed alert", "incident", h.Incident, "err", err)
		return
	}
	if c.shedAlerted == nil {
		c.shedAlerted = map[string]bool{}
	}
	c.shedAlerted[h.Incident] = true
}
