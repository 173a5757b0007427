package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/asticode/go-astiav"

	"camvault/format/container"
	"camvault/internal/bufpool"
	"camvault/media"
)

// WebM muxer settings. The writer's I/O context cannot seek, and "live"
// tells matroskaenc not to plan on it either (no Cues, no Duration, a
// Segment of unknown size), which is the shape of a WebM byte stream that
// a browser's MediaSource appends piece by piece. The cluster limits are
// lifted so that the muxer only ends a cluster where the writer flushes it
// (or where Matroska's 16-bit block timecodes force one, after 32 s).
const (
	webmIOBuffer     = 32 << 10
	opusHeadSize     = 19
	opusSampleRate   = 48000
	webmMaxClockRate = 1_000_000
	// maxDTS keeps every timestamp conversion within int64; 2^40 ticks
	// is over 12 days at the highest clock rate.
	maxDTS = 1 << 40
)

var webmOptions = [][2]string{
	{"live", "1"},
	{"cluster_size_limit", strconv.Itoa(math.MaxInt32)},
	{"cluster_time_limit", strconv.FormatInt(math.MaxInt64, 10)},
}

// WebMWriter writes one session's VP8 and Opus samples as a live WebM
// byte stream: Init is the EBML header and the start of a Segment of
// unknown size with its Info and Tracks; each Marshal is one or more
// complete Clusters carrying exactly the samples it is given. Init
// followed by every Marshal result, in order, is a valid WebM file, and
// Init followed by any one of them decodes on its own when that segment
// starts with a keyframe.
//
// It implements container.Container. It holds FFmpeg objects: Close frees
// them, and must be called whatever happened. It is not safe for
// concurrent use.
type WebMWriter struct {
	fc      *astiav.FormatContext
	ioc     *astiav.IOContext
	pkt     *astiav.Packet
	sink    *webmSink
	tracks  []webmTrack
	init    []byte
	order   []int // track indexes, video first: the tie-break between equal timestamps
	next    []int // per track, the next sample of the segment being written
	lastDTS []int64
	failed  error
}

type webmTrack struct {
	video bool
	rate  int64 // clock rate of the samples' timestamps
	tbDen int64 // stream time base 1/tbDen, as the muxer chose it
}

// webmSink collects what the muxer writes. The I/O context's write
// callback holds it rather than the writer, and Close drops its buffer:
// go-astiav v0.16.0 keeps every I/O context's callbacks in a global map
// it never cleans, so whatever they reach stays alive.
//
// A segment is written straight into a pooled buffer sized for it, which
// the caller takes over: nothing segment-sized stays with the session
// between cuts, and nothing is copied twice.
type webmSink struct {
	buf []byte
}

// reserve starts the next output in a pooled buffer of at least n bytes.
func (s *webmSink) reserve(n int) {
	bufpool.Put(s.buf)
	s.buf = bufpool.Get(n)[:0]
}

// take hands over what was written since reserve.
func (s *webmSink) take() []byte {
	out := s.buf
	s.buf = nil
	return out
}

// drop discards a failed output.
func (s *webmSink) drop() {
	bufpool.Put(s.buf)
	s.buf = nil
}

func (s *webmSink) write(b []byte) (int, error) {
	s.buf = append(s.buf, b...)
	return len(b), nil
}

// NewWebMWriter prepares a writer for the session's tracks, in order:
// VP8 video (Width and Height set, from the first keyframe) and Opus
// audio (ChannelCount 1 or 2). The header is written at once, so Init
// never fails.
func NewWebMWriter(tracks []media.Track) (_ *WebMWriter, err error) {
	if len(tracks) == 0 {
		return nil, errors.New("webm: no tracks")
	}
	w := &WebMWriter{sink: &webmSink{}}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.fc, err = astiav.AllocOutputFormatContext(nil, "webm", ""); err != nil || w.fc == nil {
		return nil, fmt.Errorf("webm: output context: %v", err)
	}
	videos := 0
	for _, t := range tracks {
		if t.ClockRate < 1 || t.ClockRate > webmMaxClockRate {
			return nil, fmt.Errorf("webm: track %d: clock rate %d", t.ID, t.ClockRate)
		}
		st := w.fc.NewStream(nil)
		if st == nil {
			return nil, errors.New("webm: cannot add a stream")
		}
		cp := st.CodecParameters()
		wt := webmTrack{rate: int64(t.ClockRate)}
		switch t.Codec {
		case media.CodecVP8:
			if t.Width < 1 || t.Width > 1<<14-1 || t.Height < 1 || t.Height > 1<<14-1 {
				return nil, fmt.Errorf("webm: track %d: VP8 picture size %dx%d (taken from a keyframe, which was not seen?)", t.ID, t.Width, t.Height)
			}
			videos++
			wt.video = true
			cp.SetMediaType(astiav.MediaTypeVideo)
			cp.SetCodecID(astiav.CodecIDVp8)
			cp.SetWidth(t.Width)
			cp.SetHeight(t.Height)
		case media.CodecOpus:
			layout := astiav.ChannelLayoutMono
			switch t.ChannelCount {
			case 1:
			case 2:
				layout = astiav.ChannelLayoutStereo
			default:
				// The OpusHead written below uses channel mapping
				// family 0, which allows mono and stereo only.
				return nil, fmt.Errorf("webm: track %d: Opus with %d channels", t.ID, t.ChannelCount)
			}
			cp.SetMediaType(astiav.MediaTypeAudio)
			cp.SetCodecID(astiav.CodecIDOpus)
			cp.SetSampleRate(opusSampleRate)
			cp.SetChannelLayout(layout)
			if err := cp.SetExtraData(opusHead(t.ChannelCount)); err != nil {
				return nil, fmt.Errorf("webm: track %d: Opus header: %w", t.ID, err)
			}
		default:
			return nil, fmt.Errorf("webm: track %d: codec %q cannot be written to WebM", t.ID, t.Codec)
		}
		st.SetTimeBase(astiav.NewRational(1, t.ClockRate))
		w.tracks = append(w.tracks, wt)
	}
	if videos > 1 {
		return nil, errors.New("webm: more than one video track")
	}
	for i, t := range w.tracks {
		if t.video {
			w.order = append([]int{i}, w.order...)
		} else {
			w.order = append(w.order, i)
		}
	}
	w.next = make([]int, len(w.tracks))
	w.lastDTS = make([]int64, len(w.tracks))
	for i := range w.lastDTS {
		w.lastDTS[i] = math.MinInt64
	}

	if w.ioc, err = astiav.AllocIOContext(webmIOBuffer, true, nil, nil, w.sink.write); err != nil {
		return nil, fmt.Errorf("webm: io context: %w", err)
	}
	w.fc.SetPb(w.ioc)
	// Bit-exact output has no random UIDs and no library version in it,
	// so the same session always gives the same init segment.
	w.fc.SetFlags(w.fc.Flags().Add(astiav.FormatContextFlagBitexact))
	if err := w.writeHeader(); err != nil {
		return nil, err
	}
	for i, st := range w.fc.Streams() {
		tb := st.TimeBase()
		if tb.Num() != 1 || tb.Den() < 1 || tb.Den() > webmMaxClockRate {
			return nil, fmt.Errorf("webm: muxer chose time base %d/%d", tb.Num(), tb.Den())
		}
		w.tracks[i].tbDen = int64(tb.Den())
	}
	if w.pkt = astiav.AllocPacket(); w.pkt == nil {
		return nil, errors.New("webm: cannot allocate a packet")
	}
	return w, nil
}

func (w *WebMWriter) writeHeader() error {
	opts := astiav.NewDictionary()
	defer opts.Free()
	for _, o := range webmOptions {
		if err := opts.Set(o[0], o[1], 0); err != nil {
			return fmt.Errorf("webm: option %s: %w", o[0], err)
		}
	}
	if err := w.fc.WriteHeader(opts); err != nil {
		return fmt.Errorf("webm: write header: %w", err)
	}
	// The muxer removes the options it used: one left over means this
	// FFmpeg does not know it, and the stream would not be what the
	// comment on webmOptions promises.
	if e := opts.Get("", nil, astiav.NewDictionaryFlags(astiav.DictionaryFlagIgnoreSuffix)); e != nil {
		return fmt.Errorf("webm: muxer ignores option %s", e.Key())
	}
	w.ioc.Flush()
	w.init = w.sink.take()
	if len(w.init) == 0 {
		return errors.New("webm: the muxer wrote no header")
	}
	return nil
}

// opusHead is the Opus identification header (RFC 7845, section 5.1)
// that WebM carries as the track's CodecPrivate. Pre-skip is 0: the
// samples' timestamps are the camera's RTP times, which already are
// presentation times, and shifting them by an encoder delay the camera
// never announced would misplace the audio.
func opusHead(channels int) []byte {
	h := make([]byte, opusHeadSize)
	copy(h, "OpusHead")
	h[8] = 1 // version
	h[9] = byte(channels)
	binary.LittleEndian.PutUint16(h[10:], 0)              // pre-skip
	binary.LittleEndian.PutUint32(h[12:], opusSampleRate) // input sample rate, informational
	binary.LittleEndian.PutUint16(h[16:], 0)              // output gain
	h[18] = 0                                             // channel mapping family
	return h
}

// Init implements container.Container: the EBML header, then the Segment
// (of unknown size) with its Info and Tracks.
func (w *WebMWriter) Init() ([]byte, error) {
	if w.fc == nil {
		return nil, errors.New("webm: writer closed")
	}
	return append([]byte(nil), w.init...), nil
}

// Marshal implements container.Container: it writes the samples in
// timestamp order (video first among equals, so a segment's cluster opens
// on its keyframe) and ends the cluster, so the bytes returned hold these
// samples and nothing else.
//
// Timestamps go to the muxer's 1 ms time base rounded to the nearest
// millisecond, with PTS = DTS: neither VP8 nor Opus reorders frames.
//
// After an error the writer is unusable: the muxer may hold part of a
// cluster, and later output would not line up with the segments.
func (w *WebMWriter) Marshal(seq uint64, tracks [][]container.Sample) ([]byte, error) {
	if w.fc == nil {
		return nil, errors.New("webm: writer closed")
	}
	if w.failed != nil {
		return nil, fmt.Errorf("webm: writer failed earlier: %w", w.failed)
	}
	if len(tracks) != len(w.tracks) {
		return nil, fmt.Errorf("webm: segment %d has %d tracks, the writer %d", seq, len(tracks), len(w.tracks))
	}
	w.sink.reserve(clusterSizeHint(tracks))
	if err := w.writeSegment(tracks); err != nil {
		w.failed = err
		w.sink.drop()
		return nil, fmt.Errorf("webm: segment %d: %w", seq, err)
	}
	return w.sink.take(), nil
}

// clusterSizeHint bounds what a segment's clusters take: the payloads,
// and per block at most 13 bytes of element header, block header and
// flags; the cluster headers fit in the slack.
func clusterSizeHint(tracks [][]container.Sample) int {
	n := 1 << 10
	for _, tr := range tracks {
		for _, sm := range tr {
			n += 16
			for _, d := range sm.Data {
				n += len(d)
			}
		}
	}
	return n
}

func (w *WebMWriter) writeSegment(tracks [][]container.Sample) error {
	clear(w.next)
	last, lastTS := -1, int64(0)
	for {
		best, bestTS := -1, int64(0)
		for _, i := range w.order {
			if w.next[i] >= len(tracks[i]) {
				continue
			}
			ts := w.tracks[i].rescale(tracks[i][w.next[i]].DTS)
			if best < 0 || ts < bestTS {
				best, bestTS = i, ts
			}
		}
		if best < 0 {
			break
		}
		sm := &tracks[best][w.next[best]]
		w.next[best]++
		if err := w.writePacket(best, sm, bestTS); err != nil {
			return err
		}
		last, lastTS = best, bestTS
	}
	// matroskaenc holds back each audio packet until the next packet
	// arrives (so that audio sharing a keyframe's timecode lands in that
	// keyframe's cluster), and ending the cluster does not write it: left
	// alone, a segment's last audio frame would open the next chunk. An
	// empty packet on the same stream releases it and is itself dropped.
	if last >= 0 && !w.tracks[last].video {
		if err := w.releaseAudio(last, lastTS); err != nil {
			return err
		}
	}
	// A null packet makes matroskaenc end the current cluster; flushing
	// the I/O context then hands every byte of it to the sink.
	if err := w.fc.WriteFrame(nil); err != nil {
		return fmt.Errorf("end cluster: %w", err)
	}
	w.ioc.Flush()
	return nil
}

func (w *WebMWriter) writePacket(i int, sm *container.Sample, ts int64) error {
	t := &w.tracks[i]
	if sm.DTS < 0 || sm.DTS > maxDTS {
		return fmt.Errorf("track %d: DTS %d out of range", i, sm.DTS)
	}
	if sm.DTS <= w.lastDTS[i] {
		return fmt.Errorf("track %d: DTS %d after %d", i, sm.DTS, w.lastDTS[i])
	}
	w.lastDTS[i] = sm.DTS
	var data []byte
	if len(sm.Data) == 1 {
		data = sm.Data[0]
	} else {
		for _, d := range sm.Data {
			data = append(data, d...)
		}
	}
	if len(data) == 0 {
		return fmt.Errorf("track %d: empty sample at DTS %d", i, sm.DTS)
	}
	if err := w.pkt.FromData(data); err != nil {
		return fmt.Errorf("track %d: packet: %w", i, err)
	}
	defer w.pkt.Unref()
	w.pkt.SetStreamIndex(i)
	w.pkt.SetDts(ts)
	w.pkt.SetPts(ts)
	w.pkt.SetDuration(t.rescale(int64(sm.Duration)))
	if sm.Key {
		w.pkt.SetFlags(w.pkt.Flags().Add(astiav.PacketFlagKey))
	}
	if err := w.fc.WriteFrame(w.pkt); err != nil {
		return fmt.Errorf("track %d: write packet at DTS %d: %w", i, sm.DTS, err)
	}
	return nil
}

func (w *WebMWriter) releaseAudio(i int, ts int64) error {
	w.pkt.Unref()
	w.pkt.SetStreamIndex(i)
	w.pkt.SetDts(ts)
	w.pkt.SetPts(ts)
	if err := w.fc.WriteFrame(w.pkt); err != nil {
		return fmt.Errorf("track %d: release the last audio packet: %w", i, err)
	}
	return nil
}

// rescale converts ticks of the track's clock to the stream's time base,
// rounding to nearest (ticks are never negative here).
func (t *webmTrack) rescale(ticks int64) int64 {
	return (ticks*t.tbDen*2 + t.rate) / (2 * t.rate)
}

// Close frees every FFmpeg object the writer holds. It is safe to call
// more than once, and on a writer whose construction failed half-way.
func (w *WebMWriter) Close() error {
	if w.pkt != nil {
		w.pkt.Free()
		w.pkt = nil
	}
	if w.fc != nil {
		// Frees the streams and the muxer's private state (the cluster
		// being built, a cached audio packet) without writing a trailer:
		// a live stream has none, and what was cut is already sealed.
		w.fc.Free()
		w.fc = nil
	}
	if w.ioc != nil {
		w.ioc.Free()
		w.ioc = nil
	}
	w.sink.drop()
	return nil
}
