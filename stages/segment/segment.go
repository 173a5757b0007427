// Package segment cuts the access units of one ingest session into
// keyframe-aligned segments: one init segment for the session and a media
// segment per cut. The default container is fragmented MP4 (ftyp+moov,
// then a moof+mdat pair per segment, written by camvault/format/fmp4);
// other formats (WebM for VP8) plug in through Config.Container.
//
// Each segment of a session with video starts with a keyframe (an H.264
// IDR picture, a VP8 keyframe), so a segment can be decoded with the init
// segment alone and the segments of a session concatenate into one
// playable file with a continuous timeline.
//
// Segmenting is the pipeline's first hop and the one that is not an
// engine stage: it holds a session's state between access units and runs
// on the goroutine that delivers them, in their order, so that a segment
// is cut the moment its successor's keyframe arrives. Each segment then
// enters the pipeline's source as a media.Item.
package segment

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"camvault/format/container"
	"camvault/format/fmp4"
	"camvault/media"
)

// Errors returned by New and Push. Push wraps them with context; use
// errors.Is.
var (
	// ErrNoKeyframe: the stream went MaxDuration without a video keyframe
	// (or, before the first keyframe, without any usable access unit).
	ErrNoKeyframe = errors.New("segment: no keyframe within max duration")
	// ErrTooLarge: a segment would buffer more than MaxBytes of payload.
	ErrTooLarge = errors.New("segment: segment exceeds max bytes")
	// ErrTimestampJump: a track's DTS jumped forward by more than
	// MaxDuration, which no sample duration can represent honestly.
	ErrTimestampJump = errors.New("segment: timestamp jump")
	// ErrClosed: Push after Flush.
	ErrClosed = errors.New("segment: segmenter flushed")
	// ErrInvalidTrack: New was given a track it cannot write.
	ErrInvalidTrack = errors.New("segment: invalid track")
	// ErrInvalidConfig: New was given an inconsistent Config.
	ErrInvalidConfig = errors.New("segment: invalid config")
)

// Defaults for a zero Config.
const (
	DefaultTarget   = 2 * time.Second
	DefaultMaxBytes = 32 << 20
)

const (
	// Clock rates outside this range are not media clocks; bounding them
	// (and timestamps, below) keeps every tick computation within int64.
	minClockRate = 1000
	maxClockRate = 1_000_000
	// maxTimestamp bounds |DTS| and |PTS|: 2^40 ticks is over 12 days even
	// at the highest clock rate.
	maxTimestamp = 1 << 40
	// maxTrackID keeps the id lookup table small.
	maxTrackID = 1 << 10
	// maxCloseWait bounds how long a cut waits for the other tracks'
	// samples that belong before it, so a dead audio track cannot stall
	// the video.
	maxCloseWait = 500 * time.Millisecond
)

// Config tunes segment cutting. The zero value gives the defaults.
type Config struct {
	// Target: cut at the first video keyframe once the segment is at least
	// this long (default 2 s). Audio-only sessions cut at this duration.
	Target time.Duration
	// MaxDuration: a stream with no keyframe for this long fails with
	// ErrNoKeyframe (default 10*Target).
	MaxDuration time.Duration
	// MaxBytes bounds the payload buffered per segment (default 32 MiB).
	MaxBytes int
	// Container writes the segments; nil means fragmented MP4
	// (format/fmp4), which cannot carry VP8. It must have been made for
	// the same tracks as New is given. The caller keeps ownership (and
	// closes it when it holds resources).
	Container container.Container
}

// Segment is one media segment: a moof+mdat fragment, or what the
// Container wrote.
type Segment struct {
	// Seq is 1, 2, 3 ... within the session; it is the mfhd sequence number.
	Seq uint64
	// Start and End are the media time covered, on the output timeline,
	// which starts at 0 at the first kept access unit. Consecutive segments
	// share their boundary: segment N's End is segment N+1's Start.
	Start, End time.Duration
	// Data is the moof+mdat pair (or the Container's segment).
	Data []byte
	// Samples is the number of access units in Data, all tracks;
	// VideoSamples those of its video tracks (frames), so the rest are
	// audio frames.
	Samples, VideoSamples int
	// Received is the latest AccessUnit.Received among them.
	Received time.Time
}

// sample is a buffered access unit. It keeps a reference to the access
// unit's NAL units rather than a copy: the ingest side already gave each
// unit its own allocation, and copying into a per-track buffer would pin
// a segment's worth of memory per camera between cuts.
type sample struct {
	dts    int64 // output timeline, track ticks
	ptsOff int32
	dur    uint32
	sync   bool
	nalus  [][]byte
	size   int
	recv   time.Time
}

type track struct {
	id       int
	rate     int64
	video    bool
	vp8      bool   // keyframes from the VP8 frame tag, not from NAL units
	avcc     bool   // fMP4 H.264: each NAL unit gets a 4-byte length prefix
	guessDur uint32 // duration of a last sample with no successor, until one is measured
	maxTicks int64  // Config.MaxDuration in ticks

	// origin maps input DTS to the output timeline; floor is the lowest
	// output DTS still accepted (earlier ones belong to emitted segments).
	origin, floor int64

	last    int64 // input DTS of the last accepted AU
	hasLast bool

	firstSeen int64 // input DTS of the first AU dropped before the start
	seen      bool

	samples []sample
	// holding: the last sample's duration is unknown until its successor.
	holding bool
	lastDur uint32

	cut int64 // pending cut, in this track's ticks
}

// Segmenter cuts one session. It is not safe for concurrent use.
type Segmenter struct {
	cfg    Config
	tracks []*track
	byID   []int // track id -> index in tracks, -1 if none
	cutter *track
	init   []byte

	container container.Container
	views     [][]container.Sample // reused per segment for the container

	started  bool
	seq      uint64
	segStart int64 // start of the open segment, cutter ticks
	closing  bool  // a cut is decided, waiting for samples before it
	cutAt    int64 // that cut, cutter ticks
	bytes    int   // buffered payload, all tracks

	dropped int
	err     error
	flushed bool
}

// New returns a Segmenter for a session with the given tracks.
func New(tracks []media.Track, cfg Config) (*Segmenter, error) {
	if cfg.Target <= 0 {
		cfg.Target = DefaultTarget
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 10 * cfg.Target
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxDuration < cfg.Target {
		return nil, fmt.Errorf("%w: MaxDuration %v shorter than Target %v", ErrInvalidConfig, cfg.MaxDuration, cfg.Target)
	}
	if len(tracks) == 0 {
		return nil, fmt.Errorf("%w: no tracks", ErrInvalidTrack)
	}

	if cfg.Container == nil && container.FormatFor(tracks) != container.FormatFMP4 {
		return nil, fmt.Errorf("%w: VP8 needs a Container (WebM): fragmented MP4 cannot carry it", ErrInvalidTrack)
	}

	s := &Segmenter{cfg: cfg, container: cfg.Container}
	maxID := 0
	for _, mt := range tracks {
		if mt.ID < 0 || mt.ID >= maxTrackID {
			return nil, fmt.Errorf("%w: track id %d out of range", ErrInvalidTrack, mt.ID)
		}
		maxID = max(maxID, mt.ID)
	}
	s.byID = make([]int, maxID+1)
	for i := range s.byID {
		s.byID[i] = -1
	}

	for i, mt := range tracks {
		if s.byID[mt.ID] >= 0 {
			return nil, fmt.Errorf("%w: duplicate track id %d", ErrInvalidTrack, mt.ID)
		}
		s.byID[mt.ID] = i
		t, err := newTrack(mt, cfg)
		if err != nil {
			return nil, fmt.Errorf("track %d: %w", mt.ID, err)
		}
		if t.video {
			if s.cutter != nil && s.cutter.video {
				return nil, fmt.Errorf("%w: track %d: more than one video track", ErrInvalidTrack, mt.ID)
			}
			s.cutter = t
		} else if s.cutter == nil {
			s.cutter = t
		}
		s.tracks = append(s.tracks, t)
	}

	if s.container != nil {
		for _, t := range s.tracks {
			t.avcc = false // the container frames payloads itself
		}
	} else {
		// The writer marshals the init segment now, which validates what
		// it needs (the SPS is parsed for the picture size), so Init
		// cannot fail later.
		w, err := fmp4.NewWriter(tracks)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidTrack, err)
		}
		s.container = w
	}
	init, err := s.container.Init()
	if err != nil {
		return nil, fmt.Errorf("%w: init segment: %v", ErrInvalidTrack, err)
	}
	s.init = init
	s.views = make([][]container.Sample, len(s.tracks))
	return s, nil
}

func newTrack(mt media.Track, cfg Config) (*track, error) {
	if mt.ClockRate < minClockRate || mt.ClockRate > maxClockRate {
		return nil, fmt.Errorf("%w: clock rate %d outside [%d, %d]", ErrInvalidTrack, mt.ClockRate, minClockRate, maxClockRate)
	}
	t := &track{id: mt.ID, rate: int64(mt.ClockRate), video: mt.IsVideo()}
	t.maxTicks = durToTicks(cfg.MaxDuration, t.rate)

	switch mt.Codec {
	case media.CodecH264:
		if len(mt.SPS) == 0 || len(mt.PPS) == 0 {
			return nil, fmt.Errorf("%w: H.264 without SPS/PPS", ErrInvalidTrack)
		}
		var sps h264.SPS
		if err := sps.Unmarshal(mt.SPS); err != nil {
			return nil, fmt.Errorf("%w: H.264 SPS: %v", ErrInvalidTrack, err)
		}
		t.guessDur = uint32(max(t.rate/30, 1))
		t.avcc = true
	case media.CodecVP8:
		// Only a Container writes VP8 (New refuses it without one); the
		// picture size is the container's business.
		t.vp8 = true
		t.guessDur = uint32(max(t.rate/30, 1))
	case media.CodecAAC:
		var conf mpeg4audio.AudioSpecificConfig
		if err := conf.Unmarshal(mt.AudioConfig); err != nil {
			return nil, fmt.Errorf("%w: AAC config: %v", ErrInvalidTrack, err)
		}
		if conf.SampleRate <= 0 || conf.ChannelCount <= 0 {
			return nil, fmt.Errorf("%w: AAC config: sample rate %d, %d channels", ErrInvalidTrack, conf.SampleRate, conf.ChannelCount)
		}
		t.guessDur = uint32(max(1024*t.rate/int64(conf.SampleRate), 1))
	case media.CodecOpus:
		// dOps is written with channel mapping family 0, which allows
		// mono and stereo only.
		if mt.ChannelCount < 1 || mt.ChannelCount > 2 {
			return nil, fmt.Errorf("%w: Opus with %d channels", ErrInvalidTrack, mt.ChannelCount)
		}
		t.guessDur = uint32(max(t.rate/50, 1))
	default:
		return nil, fmt.Errorf("%w: unsupported codec %q", ErrInvalidTrack, mt.Codec)
	}
	return t, nil
}

// Init returns the init segment: what the container's Init returned (for
// fMP4, ftyp+moov for all tracks, with track IDs media.Track.ID+1 and each
// track's timescale its clock rate).
func (s *Segmenter) Init() ([]byte, error) {
	return append([]byte(nil), s.init...), nil
}

// Dropped returns the number of access units discarded: video before the
// first keyframe, audio before it when the session has video, units with an
// unknown track, an empty payload, a truncated or corrupt VP8 frame header,
// out-of-range timestamps, a DTS not after the track's previous one, or
// arriving after their segment was emitted.
func (s *Segmenter) Dropped() int { return s.dropped }

// Push adds an access unit. It returns a segment when one is complete
// (usually when au starts the next one), else nil. Samples wait for their
// successor on the same track, whose DTS gives their duration.
//
// Push keeps au.NALUs, without copying, until the segment holding the unit
// is emitted: the caller hands them over and must not modify them.
//
// After Push returns an error the Segmenter takes no more units; Flush
// still returns what was buffered before the error, which is valid.
func (s *Segmenter) Push(au *media.AccessUnit) (*Segment, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.flushed {
		return nil, ErrClosed
	}
	if au == nil || au.Track < 0 || au.Track >= len(s.byID) || s.byID[au.Track] < 0 ||
		!validTimestamps(au.PTS, au.DTS) {
		s.dropped++
		return nil, nil
	}
	t := s.tracks[s.byID[au.Track]]
	size := fmp4.PayloadSize(t.avcc, au.NALUs)
	if size == 0 {
		s.dropped++
		return nil, nil
	}
	var key bool
	switch {
	case !t.video:
		key = true
	case t.vp8:
		// A frame too short for its tag, or a keyframe without its start
		// code, cannot be decoded: it must neither open a segment nor be
		// stored as if it were a picture.
		usable, k := vp8Frame(au.NALUs)
		if !usable {
			s.dropped++
			return nil, nil
		}
		key = k
	default:
		key = hasIDR(au.NALUs)
	}

	if !s.started {
		if t != s.cutter || !key {
			return nil, s.dropBeforeStart(t, au.DTS)
		}
		s.start(au.DTS)
	}

	if t.hasLast && au.DTS <= t.last {
		s.dropped++
		return nil, nil
	}
	rel := au.DTS - t.origin
	if rel < t.floor {
		s.dropped++
		return nil, nil
	}
	if t.hasLast && (au.DTS-t.last > t.maxTicks || au.DTS-t.last > math.MaxUint32) {
		return nil, s.fail(fmt.Errorf("track %d: DTS jumped by %v: %w", t.id, ticksToDur(au.DTS-t.last, t.rate), ErrTimestampJump))
	}

	at := ticksToDur(rel, t.rate)
	cutterKey := t == s.cutter && key
	open := s.segStart
	if s.closing {
		open = s.cutAt
	}
	if !cutterKey {
		if d := at - ticksToDur(open, s.cutter.rate); d > s.cfg.MaxDuration {
			return nil, s.fail(fmt.Errorf("track %d: %v since the last keyframe: %w", t.id, d, ErrNoKeyframe))
		}
	}
	if s.bytes+size > s.cfg.MaxBytes {
		return nil, s.fail(fmt.Errorf("track %d: %d bytes buffered, access unit of %d: %w", t.id, s.bytes, size, ErrTooLarge))
	}

	s.appendSample(t, au, rel, size, key)

	var out *Segment
	var err error
	if s.closing && (s.ready() || at-ticksToDur(s.cutAt, s.cutter.rate) >= s.closeWait()) {
		if out, err = s.emit(false); err != nil {
			return nil, s.fail(err)
		}
	}
	if !s.closing && cutterKey && rel > s.segStart &&
		(at-ticksToDur(s.segStart, t.rate) >= s.cfg.Target || s.bytes >= s.cfg.MaxBytes/2) {
		s.closing = true
		s.cutAt = rel
		for _, o := range s.tracks {
			o.cut = ceilDiv(rel*o.rate, t.rate)
		}
		// One segment per Push: if one was just emitted, this cut is
		// emitted by a later Push or merged into the segment Flush returns.
		if out == nil && s.ready() {
			if out, err = s.emit(false); err != nil {
				return nil, s.fail(err)
			}
		}
	}
	return out, nil
}

// Flush ends the stream and returns the buffered samples as the last
// segment, or nil if there are none. Samples still waiting for a successor
// get their track's previous duration. A cut still waiting for other tracks
// is abandoned: the keyframe simply stays inside the last segment.
func (s *Segmenter) Flush() (*Segment, error) {
	if s.flushed {
		return nil, nil
	}
	s.flushed = true
	if s.bytes == 0 {
		return nil, nil
	}
	s.closing = false
	seg, err := s.emit(true)
	if err != nil {
		return nil, fmt.Errorf("segment: %w", err)
	}
	return seg, nil
}

func (s *Segmenter) fail(err error) error {
	s.err = fmt.Errorf("segment: %w", err)
	return s.err
}

// dropBeforeStart discards an AU that precedes the first keyframe; nothing
// is buffered, but a stream that never becomes decodable must end.
func (s *Segmenter) dropBeforeStart(t *track, dts int64) error {
	if !t.seen {
		t.seen, t.firstSeen = true, dts
	} else if d := dts - t.firstSeen; d > t.maxTicks {
		return s.fail(fmt.Errorf("track %d: %v of media before the first keyframe: %w", t.id, ticksToDur(d, t.rate), ErrNoKeyframe))
	}
	s.dropped++
	return nil
}

// start puts the output timeline's 0 at the cutter track's DTS, for every
// track, so that tracks stay in sync whatever their clock rates.
func (s *Segmenter) start(dts int64) {
	s.started = true
	for _, t := range s.tracks {
		t.origin = floorDiv(dts*t.rate, s.cutter.rate)
	}
}

func (s *Segmenter) appendSample(t *track, au *media.AccessUnit, rel int64, size int, key bool) {
	if t.holding {
		prev := &t.samples[len(t.samples)-1]
		prev.dur = uint32(rel - prev.dts)
		t.lastDur = prev.dur
	}
	t.samples = append(t.samples, sample{
		dts:    rel,
		ptsOff: int32(au.PTS - au.DTS),
		sync:   key,
		nalus:  au.NALUs,
		size:   size,
		recv:   au.Received,
	})
	t.holding = true
	t.last, t.hasLast = au.DTS, true
	s.bytes += size
}

// ready reports whether every track has all its samples before the pending
// cut complete, i.e. its held sample (if any) is at or after the cut.
func (s *Segmenter) ready() bool {
	for _, t := range s.tracks {
		if t.holding && t.samples[len(t.samples)-1].dts < t.cut {
			return false
		}
	}
	return true
}

func (s *Segmenter) closeWait() time.Duration {
	return min(s.cfg.Target/2, maxCloseWait)
}

// emit cuts the samples before the pending cut (all of them when final)
// into a Segment and keeps the rest for the next one. It fails only when
// the Container does; the segment's samples are gone either way.
func (s *Segmenter) emit(final bool) (*Segment, error) {
	counts := make([]int, len(s.tracks))
	seg := &Segment{Start: ticksToDur(s.segStart, s.cutter.rate)}
	for i, t := range s.tracks {
		limit := t.cut
		if final {
			limit = math.MaxInt64
		}
		if t.holding {
			if last := &t.samples[len(t.samples)-1]; last.dts < limit {
				// No successor in time: the next segment's base time
				// carries the real timing, so a guess cannot drift.
				last.dur = t.lastDur
				if last.dur == 0 {
					last.dur = t.guessDur
				}
				t.holding = false
			}
		}
		n := 0
		for n < len(t.samples) && t.samples[n].dts < limit {
			n++
		}
		counts[i] = n
		if !final {
			t.floor = max(t.floor, t.cut)
		}
		for _, sm := range t.samples[:n] {
			if sm.recv.After(seg.Received) {
				seg.Received = sm.recv
			}
		}
		if final && n > 0 {
			last := t.samples[n-1]
			seg.End = max(seg.End, ticksToDur(last.dts+int64(last.dur), t.rate))
		}
		seg.Samples += n
		if t.video {
			seg.VideoSamples += n
		}
	}
	if !final {
		seg.End = ticksToDur(s.cutAt, s.cutter.rate)
		s.segStart = s.cutAt
	}
	s.closing = false
	s.seq++
	seg.Seq = s.seq
	var err error
	seg.Data, err = s.marshalWith(s.seq, counts)

	for i, t := range s.tracks {
		s.bytes -= t.consume(counts[i])
	}
	if err != nil {
		return nil, err
	}
	return seg, nil
}

// marshalWith hands the segment's samples to the container.
func (s *Segmenter) marshalWith(seq uint64, counts []int) ([]byte, error) {
	for i, t := range s.tracks {
		v := s.views[i][:0]
		for _, sm := range t.samples[:counts[i]] {
			v = append(v, container.Sample{DTS: sm.dts, PTSOffset: sm.ptsOff, Duration: sm.dur, Key: sm.sync, Data: sm.nalus})
		}
		s.views[i] = v
	}
	data, err := s.container.Marshal(seq, s.views)
	for i := range s.views {
		clear(s.views[i]) // let the payloads go with the segment
	}
	if err != nil {
		return nil, fmt.Errorf("segment %d: container: %w", seq, err)
	}
	return data, nil
}

// consume removes the first n samples, returning their payload size.
func (t *track) consume(n int) int {
	size := 0
	for _, sm := range t.samples[:n] {
		size += sm.size
	}
	k := copy(t.samples, t.samples[n:])
	clear(t.samples[k:]) // let the emitted payloads go
	t.samples = t.samples[:k]
	return size
}

func validTimestamps(pts, dts int64) bool {
	return dts >= -maxTimestamp && dts <= maxTimestamp &&
		pts >= -maxTimestamp && pts <= maxTimestamp &&
		pts-dts >= math.MinInt32 && pts-dts <= math.MaxInt32
}

// hasIDR decides keyframes from the bitstream rather than AccessUnit.Key:
// a segment that starts on anything but an IDR picture is undecodable.
func hasIDR(nalus [][]byte) bool {
	for _, n := range nalus {
		if len(n) > 0 && h264.NALUType(n[0]&0x1f) == h264.NALUTypeIDR {
			return true
		}
	}
	return false
}

func ticksToDur(ticks, rate int64) time.Duration {
	return time.Duration(ticks/rate*int64(time.Second) + ticks%rate*int64(time.Second)/rate)
}

func durToTicks(d time.Duration, rate int64) int64 {
	sec := int64(time.Second)
	return int64(d)/sec*rate + int64(d)%sec*rate/sec
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 {
	return -floorDiv(-a, b)
}
