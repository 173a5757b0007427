// Package redact makes the redacted copy a subject-access request needs:
// faces found in an incident's decrypted original and grouped into tracks
// (Detect), a person's decisions and manual edits (Plan), and an H.264/AAC
// MP4 of a time range with the chosen faces and boxes blurred, pictures
// blacked out and sound muted (Render), with a signed report of what was
// done (Report). Everything works on the plaintext in memory: nothing
// decrypted is written anywhere but the approved output.
package redact

import (
	"fmt"
	"math"
	"time"

	"camvault/evidence"
	"camvault/format/redaction"
)

// Clip is one ingest session's plaintext original in memory. Times in
// this package are on the clip's picture clock: 0 is the session's first
// picture (the stored video's start time), whatever its timestamps. A
// clip may also be the init segment and a run of consecutive media
// segments; its clock then starts at the first of those.
type Clip interface {
	// Media is the session's stored media: its init segment followed by
	// its media segments (fragmented MP4 for H.264, WebM for VP8).
	Media() []byte
}

// Memory is a Clip over bytes already in memory (evidence.SessionMedia's
// Data).
type Memory []byte

// Media returns the bytes.
func (m Memory) Media() []byte { return m }

// SessionClip is the Clip of a session that evidence decrypted.
func SessionClip(m *evidence.SessionMedia) Clip { return Memory(m.Data) }

// Box is a rectangle in normalised picture coordinates: (0,0) is the top
// left corner, (1,1) the bottom right, whatever the picture's size.
type Box struct {
	X, Y, W, H float64
}

// Valid reports whether b is a box of positive size within the picture.
func (b Box) Valid() bool {
	for _, v := range []float64{b.X, b.Y, b.W, b.H} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return b.W > 0 && b.H > 0 && b.X >= 0 && b.Y >= 0 && b.X+b.W <= 1+1e-9 && b.Y+b.H <= 1+1e-9
}

// IoU is the intersection of a and b over their union.
func IoU(a, b Box) float64 {
	ix := math.Max(0, math.Min(a.X+a.W, b.X+b.W)-math.Max(a.X, b.X))
	iy := math.Max(0, math.Min(a.Y+a.H, b.Y+b.H)-math.Max(a.Y, b.Y))
	inter := ix * iy
	union := a.W*a.H + b.W*b.H - inter
	if union <= 0 {
		return 0
	}
	return inter / union
}

// lerp is the box a fraction f of the way from a to b.
func lerp(a, b Box, f float64) Box {
	return Box{a.X + (b.X-a.X)*f, a.Y + (b.Y-a.Y)*f, a.W + (b.W-a.W)*f, a.H + (b.H-a.H)*f}
}

// grow widens b by m of its size on every side, clipped to the picture.
func (b Box) grow(m float64) Box {
	x0, y0 := math.Max(0, b.X-m*b.W), math.Max(0, b.Y-m*b.H)
	x1, y1 := math.Min(1, b.X+b.W*(1+m)), math.Min(1, b.Y+b.H*(1+m))
	return Box{x0, y0, x1 - x0, y1 - y0}
}

// Detection is one face found in one picture.
type Detection struct {
	At    time.Duration // on the clip's picture clock (0: its first picture)
	Box   Box
	Score float64 // the cascade's confidence; higher is surer
}

// Track is one face followed over time: the detections in time order and
// a JPEG thumbnail of its surest one, for the reviewer to decide on.
type Track struct {
	ID         int
	Detections []Detection
	Thumb      []byte // JPEG
}

// First and Last are the times of the track's first and last detection.
func (t *Track) First() time.Duration { return t.Detections[0].At }
func (t *Track) Last() time.Duration  { return t.Detections[len(t.Detections)-1].At }

// BoxAt is where the track's face is at time at: interpolated linearly
// between the detections around it, and held for hold before the first
// and after the last (a face sampled every few pictures was there for
// the pictures in between too). ok is false outside that.
func (t *Track) BoxAt(at, hold time.Duration) (Box, bool) {
	d := t.Detections
	if len(d) == 0 || at < d[0].At-hold || at > d[len(d)-1].At+hold {
		return Box{}, false
	}
	if at <= d[0].At {
		return d[0].Box, true
	}
	for i := 1; i < len(d); i++ {
		if at <= d[i].At {
			a, b := d[i-1], d[i]
			span := b.At - a.At
			if span <= 0 {
				return b.Box, true
			}
			return lerp(a.Box, b.Box, float64(at-a.At)/float64(span)), true
		}
	}
	return d[len(d)-1].Box, true
}

// EditKind is what an Edit does.
type EditKind string

const (
	// EditTrack decides on a detected track: blur it or keep it.
	EditTrack EditKind = "track"
	// EditBox blurs a box the reviewer drew, over [From, To), moving
	// linearly from Start (at From) to End (at To).
	EditBox EditKind = "box"
	// EditBlackout blacks out the whole picture over [From, To).
	EditBlackout EditKind = "blackout"
	// EditMute silences the sound over [From, To).
	EditMute EditKind = "mute"
)

// Edit is one decision of the reviewer, each with its reason.
type Edit struct {
	Kind EditKind
	// Track and Keep: for EditTrack, the track's ID and whether it is
	// kept (the requester themself) rather than blurred.
	Track int
	Keep  bool
	// From and To: the time range of a box, blackout or mute, on the
	// clip's picture clock.
	From, To time.Duration
	// Start and End: an EditBox's positions at From and at To.
	Start, End Box
	Reason     string
}

// Plan is what a redaction does: the range of the clip to hand over, the
// detected tracks, and the edits. A track no EditTrack keeps is blurred:
// a face nobody looked at is not handed over.
type Plan struct {
	From, To time.Duration // To ≤ 0: to the end of the clip
	Tracks   []Track
	Edits    []Edit
}

// Plan defaults.
const (
	// DefaultHold is how long a track's box stays before its first and
	// after its last detection.
	DefaultHold = 400 * time.Millisecond
	// Margin is how much a face's box grows on each side before it is
	// blurred, as a fraction of its size: the cascade's square covers the
	// eyes to the mouth, not the hair, ears and chin.
	Margin = 0.25
	// muteGuard widens a mute on each side: AAC frames overlap by 1024
	// samples, so a frame beside a silenced range would otherwise leak
	// its sound into the first and last ~21 ms of it.
	muteGuard = 50 * time.Millisecond
)

// Validate checks the plan: ranges in order, boxes within the picture,
// every edit with a reason, every decision about a track that exists.
func (p *Plan) Validate() error {
	if p.From < 0 || p.To > 0 && p.To <= p.From {
		return fmt.Errorf("plan: range %v to %v", p.From, p.To)
	}
	ids := map[int]bool{}
	for _, t := range p.Tracks {
		if ids[t.ID] {
			return fmt.Errorf("plan: track %d twice", t.ID)
		}
		ids[t.ID] = true
		if len(t.Detections) == 0 {
			return fmt.Errorf("plan: track %d has no detections", t.ID)
		}
		for _, d := range t.Detections {
			if !d.Box.Valid() {
				return fmt.Errorf("plan: track %d: box %+v outside the picture", t.ID, d.Box)
			}
		}
	}
	decided := map[int]bool{}
	for i, e := range p.Edits {
		if e.Reason == "" {
			return fmt.Errorf("plan: edit %d (%s) has no reason", i, e.Kind)
		}
		switch e.Kind {
		case EditTrack:
			if !ids[e.Track] {
				return fmt.Errorf("plan: edit %d: no track %d", i, e.Track)
			}
			if decided[e.Track] {
				return fmt.Errorf("plan: edit %d: track %d decided twice", i, e.Track)
			}
			decided[e.Track] = true
		case EditBox, EditBlackout, EditMute:
			if e.From < 0 || e.To <= e.From {
				return fmt.Errorf("plan: edit %d (%s): range %v to %v", i, e.Kind, e.From, e.To)
			}
			if e.Kind == EditBox && (!e.Start.Valid() || !e.End.Valid()) {
				return fmt.Errorf("plan: edit %d: box outside the picture", i)
			}
		default:
			return fmt.Errorf("plan: edit %d: unknown kind %q", i, e.Kind)
		}
	}
	return nil
}

// blurred reports whether the plan blurs track id, and why.
func (p *Plan) blurred(id int) (bool, string) {
	for _, e := range p.Edits {
		if e.Kind == EditTrack && e.Track == id {
			return !e.Keep, e.Reason
		}
	}
	return true, "no decision: blurred by default"
}

// Report is the redaction report (camvault/format/redaction), signed with
// the node key: Sign and Verify.
type Report = redaction.Report

// Report starts the redaction report of the plan: its range, every track
// with its decision and reason, and every edit. The caller adds who asked
// and approved, the chunks (evidence.Report.RedactionChunks) and the
// output file, then signs it.
func (p *Plan) Report() *Report {
	r := &Report{Version: redaction.Version, FromNS: int64(p.From), ToNS: int64(p.To),
		Tracks: []redaction.Track{}, Edits: []redaction.Edit{}}
	for _, t := range p.Tracks {
		blur, why := p.blurred(t.ID)
		rt := redaction.Track{ID: t.ID, Decision: redaction.DecisionKeep, Reason: why}
		if blur {
			rt.Decision = redaction.DecisionBlur
		}
		if len(t.Detections) > 0 {
			rt.FirstNS, rt.LastNS = int64(t.First()), int64(t.Last())
		}
		for _, d := range t.Detections {
			rt.Boxes = append(rt.Boxes, reportBox(d.At, d.Box))
		}
		r.Tracks = append(r.Tracks, rt)
	}
	for _, e := range p.Edits {
		re := redaction.Edit{Kind: string(e.Kind), Reason: e.Reason, FromNS: int64(e.From), ToNS: int64(e.To)}
		switch e.Kind {
		case EditTrack:
			continue // in Tracks
		case EditBox:
			re.Decision = redaction.DecisionBlur
			re.Boxes = []redaction.Box{reportBox(e.From, e.Start), reportBox(e.To, e.End)}
		case EditBlackout:
			re.Decision = redaction.DecisionBlack
		case EditMute:
			re.Decision = redaction.DecisionMute
		}
		r.Edits = append(r.Edits, re)
	}
	return r
}

func reportBox(at time.Duration, b Box) redaction.Box {
	return redaction.Box{AtNS: int64(at), X: b.X, Y: b.Y, W: b.W, H: b.H}
}
