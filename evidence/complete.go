package evidence

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"camvault/format/chunk"
	"camvault/format/manifest"
)

// TimeTolerance is how far apart the end of one chunk and the start of
// the next may be before the media time between them counts as missing.
// The segmenter stamps segment N's end and segment N+1's start from the
// same tick, so honest boundaries are equal to the nanosecond; the
// millisecond allows for a writer that rounds to it (WebM block times)
// and is well below one frame (33 ms at 30 fps), so no lost picture fits
// in it.
const TimeTolerance = time.Millisecond

// trackKey names one track of one ingest session: its sequence numbers
// and media time are counted independently of every other's.
type trackKey struct{ session, track string }

// verifyComplete checks that the manifest accounts for everything between
// a session's first and last records: each session after the first is
// announced by a gap (the reconnect), each track's sequence numbers run
// from its first without a hole, and its media time runs on from chunk to
// chunk, except where gap records say what is missing (docs/FORMAT.md,
// "Completeness"). A node that failed to write records, and wrote later
// ones, leaves a hole no gap explains: that fails.
func verifyComplete(rep *Report, recs []manifest.Record) {
	chunks := map[trackKey][]*manifest.Record{}
	gaps := map[string][]*manifest.Record{} // by session
	var sessions []string
	seen := map[string]bool{}
	addSession := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			sessions = append(sessions, s)
		}
	}
	first := true
	for i := range recs {
		rec := &recs[i]
		switch rec.Kind {
		case manifest.KindSession:
			if !first && (i == 0 || recs[i-1].Kind != manifest.KindGap) {
				rep.fail(rec, "", "session %s continues the incident without a gap record before it: nothing accounts for the time since the previous session", rec.Session)
			}
			first = false
			addSession(rec.Session)
		case manifest.KindChunk:
			k := trackKey{rec.Session, rec.Track}
			chunks[k] = append(chunks[k], rec)
			addSession(rec.Session)
		case manifest.KindGap:
			if rec.Session != "" {
				gaps[rec.Session] = append(gaps[rec.Session], rec)
			}
		}
	}
	for _, s := range sessions {
		orig := chunks[trackKey{s, chunk.TrackOriginal}]
		checkTrack(rep, s, chunk.TrackOriginal, orig, gaps[s])
		for _, t := range []string{chunk.TrackProxy, chunk.TrackThumb} {
			checkDerivedTrack(rep, s, t, orig, chunks[trackKey{s, t}], gaps[s])
		}
	}
}

// gapTrack reports whether gap g speaks for track: a gap without a track
// (a crash's) speaks for every track of its session.
func gapTrack(g *manifest.Record, track string) bool {
	return g.Track == "" || g.Track == track
}

// ranged reports whether a gap carries the media time it covers. A gap
// without one (written before gaps carried ranges, or for a loss of no
// measurable length) covers only the hole where it sits in the manifest.
func ranged(g *manifest.Record) bool { return g.EndNS > g.StartNS }

// checkTrack walks one session's chunks of track in seq order, from the
// virtual boundary before seq 0 at media time 0, and fails every hole no
// gap record covers.
func checkTrack(rep *Report, session, track string, cs, gaps []*manifest.Record) {
	if len(cs) == 0 {
		return
	}
	cs = slices.SortedFunc(slices.Values(cs), func(a, b *manifest.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	var spans []span
	for _, g := range gaps {
		if gapTrack(g, track) && ranged(g) {
			spans = append(spans, span{g.StartNS, g.EndNS})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	var prev *manifest.Record // nil: before seq 0, at media time 0
	for _, c := range cs {
		nextSeq, prevEnd := uint64(0), int64(0)
		if prev != nil {
			nextSeq, prevEnd = prev.Seq+1, prev.EndNS
		}
		if prev != nil && c.Seq == prev.Seq {
			rep.fail(c, "", "%s/%d of session %s is recorded twice", track, c.Seq, session)
			continue
		}
		seqHole := c.Seq > nextSeq
		timeHole := c.StartNS-prevEnd > int64(TimeTolerance)
		if (seqHole || timeHole) && !holeCovered(prev, c, nextSeq, prevEnd, seqHole, timeHole, track, gaps, spans) {
			rep.fail(c, "", "%s", describeHole(session, track, prev, c, nextSeq, prevEnd, seqHole))
		}
		prev = c
	}
}

type span struct{ from, to int64 }

// holeCovered reports whether the gaps explain the hole before chunk c:
// a range-less gap written between the chunks around the hole covers it
// whole; otherwise a gap must name one of the missing sequence numbers
// and the ranged gaps' media times together must span the missing time.
func holeCovered(prev, c *manifest.Record, nextSeq uint64, prevEnd int64, seqHole, timeHole bool, track string, gaps []*manifest.Record, spans []span) bool {
	lo := int64(-1)
	if prev != nil {
		lo = int64(prev.Index)
	}
	for _, g := range gaps {
		if gapTrack(g, track) && !ranged(g) && int64(g.Index) > lo && g.Index < c.Index {
			return true
		}
	}
	if seqHole && !slices.ContainsFunc(gaps, func(g *manifest.Record) bool {
		return gapTrack(g, track) && g.Seq >= nextSeq && g.Seq < c.Seq
	}) {
		return false
	}
	if !timeHole {
		return true
	}
	reach := prevEnd
	for _, s := range spans {
		if s.from-reach > int64(TimeTolerance) {
			break
		}
		reach = max(reach, s.to)
	}
	return c.StartNS-reach <= int64(TimeTolerance)
}

// describeHole names what is missing before chunk c: the track, the
// sequence numbers, the media time and the wall-clock time.
func describeHole(session, track string, prev, c *manifest.Record, nextSeq uint64, prevEnd int64, seqHole bool) string {
	what := "no sequence number is missing but"
	if seqHole {
		what = fmt.Sprintf("%s/%d..%d missing:", track, nextSeq, c.Seq-1)
		if c.Seq-1 == nextSeq {
			what = fmt.Sprintf("%s/%d missing:", track, nextSeq)
		}
	}
	// A chunk's wall is the wall-clock time of its start_ns.
	fromWall := c.Wall.Add(-time.Duration(c.StartNS - prevEnd))
	if prev != nil {
		fromWall = prev.Wall.Add(time.Duration(prev.EndNS - prev.StartNS))
	}
	return fmt.Sprintf("incomplete: session %s track %s: %s media time %s to %s (%s, wall clock %s to %s) has no chunk and no gap record covering it",
		session, track, what, mediaTime(prevEnd), mediaTime(c.StartNS), time.Duration(c.StartNS-prevEnd).Round(time.Millisecond),
		fromWall.UTC().Format(time.RFC3339Nano), c.Wall.UTC().Format(time.RFC3339Nano))
}

func mediaTime(ns int64) string {
	return fmt.Sprintf("%.3f s", time.Duration(ns).Seconds())
}

// checkDerivedTrack checks a derived track of a session against its originals:
// derived work is optional, but where a session has any record of the
// track, each original media chunk has its derived chunk or a gap record
// (shed or failed work) of the same seq, and a proxy chunk has the proxy
// init (seq 0). A crash's gap (no track) excuses the derived work its
// workers still held: it leaves no record of its own.
func checkDerivedTrack(rep *Report, session, track string, orig, derived, gaps []*manifest.Record) {
	have := map[uint64]bool{}
	var last *manifest.Record
	for _, d := range derived {
		have[d.Seq] = true
		last = d
	}
	recorded := len(derived) > 0
	for _, g := range gaps {
		if g.Track == "" {
			return
		}
		if g.Track == track {
			have[g.Seq], recorded = true, true
		}
	}
	if !recorded {
		return
	}
	var missing []uint64
	for _, o := range orig {
		if o.Seq >= 1 && !have[o.Seq] {
			missing = append(missing, o.Seq)
		}
	}
	if track == chunk.TrackProxy && len(derived) > 0 && !have[0] {
		missing = append([]uint64{0}, missing...)
	}
	if len(missing) > 0 {
		rep.fail(last, "", "incomplete: session %s track %s: no chunk and no gap record for seq %s, which the session's original chunks call for",
			session, track, seqRanges(missing))
	}
}
