package ingest

import "fmt"

// TrackLoss is one track's account of media the camera sent that the
// recording will not have: lost RTP packets, payloads that could not be
// decoded, a picture cut off at the end. Each becomes a gap record
// (Session.Lost) that says why, so that no footage goes missing without
// a word. The protocol servers call it under their session's lock, in
// packet order.
type TrackLoss struct {
	Track int
	Video bool

	lastPTS int64 // the last access unit handed on
	havePTS bool
	// broken: video was lost and the track waits for a keyframe; the
	// frames in between are left out and become one gap from brokenFrom.
	broken     bool
	brokenFrom int64
	brokenLost int
	brokenWhy  string // an undecodable payload among the causes, if any
	// seenPTS is the timestamp of the last packet handed to the
	// depacketizer; open says that packet did not end its video picture
	// (no marker bit), so the depacketizer holds part of a picture. A
	// session that ends open lost the rest of that picture: no later
	// packet came to show the hole.
	seenPTS int64
	open    bool
}

// Seen notes the packet just handed to the depacketizer.
func (t *TrackLoss) Seen(pts int64, marker bool) {
	t.seenPTS, t.open = pts, t.Video && !marker
}

// Lost records media given up on: lost packets before the one at pts, or
// that packet's payload when it could not be decoded (undecodable). The
// caller has reset its depacketizer. Audio loses just those frames, a gap
// at once; video is undecodable until the next keyframe, where the
// depacketizer starts again and Write closes the gap. s is nil before
// the recording started: nothing is missing from it then. wantKey says
// that the caller should ask the camera for a keyframe now.
func (t *TrackLoss) Lost(s Session, lost int, undecodable error, pts int64) (wantKey bool) {
	t.open = false // what the depacketizer held is gone with the reset
	if s == nil || !t.havePTS {
		return false
	}
	why := ""
	if undecodable != nil {
		why = fmt.Sprintf("undecodable RTP payload on track %d (%v)", t.Track, undecodable)
	}
	if !t.Video {
		if why == "" {
			why = t.lostNote(lost)
		}
		s.Lost(t.Track, t.lastPTS, pts, why)
		return false
	}
	if !t.broken {
		t.broken, t.brokenFrom = true, t.lastPTS
	}
	if t.brokenWhy == "" {
		t.brokenWhy = why
	}
	t.brokenLost += lost
	return true
}

// Write is called before an access unit at pts is handed to s: a broken
// video track's gap ends at it.
func (t *TrackLoss) Write(s Session, pts int64) {
	if t.broken {
		s.Lost(t.Track, t.brokenFrom, pts, t.brokenNote()+": frames up to the next keyframe left out")
		t.broken, t.brokenLost, t.brokenWhy = false, 0, ""
	}
	t.lastPTS, t.havePTS = pts, true
}

// End records, when the session ends, what the track was still missing.
func (t *TrackLoss) End(s Session) {
	switch {
	case s == nil || !t.havePTS:
	case t.broken:
		s.Lost(t.Track, t.brokenFrom, max(t.seenPTS, t.lastPTS), t.brokenNote()+": frames up to the end left out")
	case t.open:
		s.Lost(t.Track, t.lastPTS, t.seenPTS, fmt.Sprintf("the last picture of track %d was not complete when the session ended: its last RTP packet(s) never arrived", t.Track))
	}
}

func (t *TrackLoss) lostNote(lost int) string {
	return fmt.Sprintf("%d RTP packet(s) of track %d lost in transit and not repaired", lost, t.Track)
}

// brokenNote says why a video track's frames were left out.
func (t *TrackLoss) brokenNote() string {
	switch {
	case t.brokenWhy == "":
		return t.lostNote(t.brokenLost)
	case t.brokenLost == 0:
		return t.brokenWhy
	}
	return t.brokenWhy + "; " + t.lostNote(t.brokenLost)
}
