package codec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
	"unsafe"

	"github.com/asticode/go-astiav"
)

// Picture is one decoded picture in 8-bit 4:2:0 (yuv420p). Its planes
// are FFmpeg's memory, valid only during the callback that gets it.
type Picture struct {
	// At is the picture's presentation time since the start of the
	// stored media's video (its first picture's time).
	At            time.Duration
	Width, Height int
	// Planes are Y, Cb and Cr, each row Strides[i] bytes after the
	// previous one; the chroma planes are (Width+1)/2 × (Height+1)/2.
	Planes  [3][]byte
	Strides [3]int
}

// Samples is one frame of decoded audio as planar float samples, one
// slice per channel, in FFmpeg's memory: valid only during the callback.
type Samples struct {
	At       time.Duration // the first sample's time, on the pictures' clock
	Rate     int           // samples per second
	Channels [][]float32
}

func picture(f *astiav.Frame, at time.Duration) *Picture {
	w, h := f.Width(), f.Height()
	ch := (h + 1) / 2
	p, st := planes(f, 3, [3]int{h, ch, ch})
	return &Picture{At: at, Width: w, Height: h, Planes: p, Strides: st}
}

// openStored opens a session's stored media (fragmented MP4 or WebM)
// from memory and finds its video stream's time origin.
func openStored(stored []byte) (*astiav.FormatContext, func(), error) {
	if len(stored) == 0 {
		return nil, nil, errors.New("no media")
	}
	format := "mp4"
	if IsEBML(stored) {
		format = "matroska"
	}
	return openMemoryInput(stored, format, true)
}

// videoOrigin is the time the pictures' clock counts from: the video
// stream's start (its first picture), 0 when the demuxer does not know it.
func videoOrigin(in *astiav.FormatContext) time.Duration {
	for _, s := range in.Streams() {
		if s.CodecParameters().MediaType() != astiav.MediaTypeVideo {
			continue
		}
		if st := s.StartTime(); st != astiav.NoPtsValue {
			return toDuration(st, s.TimeBase())
		}
		return 0
	}
	return 0
}

func toDuration(ts int64, tb astiav.Rational) time.Duration {
	return time.Duration(astiav.RescaleQ(ts, tb, astiav.NewRational(1, int(time.Second))))
}

func fromDuration(d time.Duration, tb astiav.Rational) int64 {
	return astiav.RescaleQ(int64(d), astiav.NewRational(1, int(time.Second)), tb)
}

// eachPacket reads every packet of in and hands it to fn, which must
// not keep it (it is unreferenced after fn), until the end of the input,
// ctx's end or fn's error.
func eachPacket(ctx context.Context, in *astiav.FormatContext, fn func(*astiav.Packet) error) error {
	pkt := astiav.AllocPacket()
	if pkt == nil {
		return errors.New("cannot allocate a packet")
	}
	defer pkt.Free()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := in.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				return nil
			}
			return fmt.Errorf("read packet: %w", err)
		}
		err := fn(pkt)
		pkt.Unref()
		if err != nil {
			return err
		}
	}
}

// Pictures decodes the video of stored media (a session's plaintext init
// and media segments, fragmented MP4 or WebM, in memory) and calls fn for
// every every-th picture (every ≤ 1: all of them), in presentation
// order. The picture is read-only. threads is the decoder's thread count
// (0: FFmpeg decides). Nothing is written anywhere.
func Pictures(ctx context.Context, stored []byte, every, threads int, fn func(*Picture) error) (err error) {
	in, closeIn, err := openStored(stored)
	if err != nil {
		return fmt.Errorf("pictures: %w", err)
	}
	defer closeIn()
	var vs *astiav.Stream
	for _, s := range in.Streams() {
		if s.CodecParameters().MediaType() == astiav.MediaTypeVideo {
			vs = s
			break
		}
	}
	if vs == nil {
		return errors.New("pictures: no video stream")
	}
	origin := videoOrigin(in)
	dec, err := NewDecoder(vs.CodecParameters(), threads, false)
	if err != nil {
		return fmt.Errorf("pictures: %w", err)
	}
	defer dec.Close()
	var sc *Scaler
	defer func() {
		if sc != nil {
			sc.Close()
		}
	}()
	if every < 1 {
		every = 1
	}
	n := 0
	emit := func(f *astiav.Frame) error {
		n++
		if (n-1)%every != 0 {
			return nil
		}
		if f.Pts() == astiav.NoPtsValue {
			return fmt.Errorf("%w: a picture without a timestamp", ErrDecode)
		}
		at := toDuration(f.Pts(), vs.TimeBase()) - origin
		pic := f
		if f.PixelFormat() != astiav.PixelFormatYuv420P || f.Width()%2 != 0 || f.Height()%2 != 0 {
			w, h := f.Width()&^1, f.Height()&^1
			if w < 2 || h < 2 {
				return fmt.Errorf("picture size %dx%d", f.Width(), f.Height())
			}
			if sc == nil || sc.width != w || sc.height != h {
				if sc != nil {
					sc.Close()
				}
				if sc, err = NewScaler(w, h, astiav.PixelFormatYuv420P); err != nil {
					return err
				}
			}
			if pic, err = sc.Scale(f); err != nil {
				return err
			}
		}
		return fn(picture(pic, at))
	}
	if err := eachPacket(ctx, in, func(pkt *astiav.Packet) error {
		if pkt.StreamIndex() != vs.Index() {
			return nil
		}
		return dec.Decode(pkt, emit)
	}); err != nil {
		return fmt.Errorf("pictures: %w", err)
	}
	if err := dec.Decode(nil, emit); err != nil {
		return fmt.Errorf("pictures: %w", err)
	}
	return nil
}

// Rewrite is a re-encoding of part of the stored media with its pictures
// and sound changed by the caller: a redacted copy.
type Rewrite struct {
	// From and To bound the part kept, on the pictures' clock (To ≤ 0:
	// to the end). The output's clock starts at From.
	From, To time.Duration
	// Video, when set, may change each kept picture in place.
	Video func(*Picture) error
	// Audio, when set, may change each kept audio frame in place.
	Audio func(*Samples) error
}

// rewriter is a Rewrite in progress: the range in each stream's units.
type rewriter struct {
	Rewrite
	origin time.Duration
}

func (r *rewriter) keep(at time.Duration) bool {
	return at >= r.From && (r.To <= 0 || at < r.To)
}

// video runs the hook on a kept picture and moves it onto the output's
// clock; keep is false for a picture outside the range.
func (r *rewriter) video(s *exportStream, f *astiav.Frame) (keep bool, err error) {
	at := toDuration(f.Pts(), s.in.TimeBase()) - r.origin
	if !r.keep(at) {
		return false, nil
	}
	if r.Video != nil {
		if err := r.Video(picture(f, at)); err != nil {
			return false, err
		}
	}
	f.SetPts(f.Pts() - fromDuration(r.origin+r.From, s.in.TimeBase()))
	return true, nil
}

// audio does the same for an audio frame (timestamps in 1/sample rate).
func (r *rewriter) audio(f *astiav.Frame) (keep bool, err error) {
	tb := astiav.NewRational(1, f.SampleRate())
	at := toDuration(f.Pts(), tb) - r.origin
	if !r.keep(at) {
		return false, nil
	}
	if r.Audio != nil {
		if err := makeWritable(f); err != nil {
			return false, err
		}
		n := f.NbSamples()
		chans := f.ChannelLayout().NbChannels()
		if chans < 1 || chans > 2 {
			return false, fmt.Errorf("audio frame of %d channels", chans) // the AAC side is mono or stereo
		}
		p, _ := planes(f, chans, [3]int{1, 1})
		s := &Samples{At: at, Rate: f.SampleRate()}
		for c := 0; c < chans; c++ {
			// For audio a plane's stride is its size in bytes.
			if len(p[c]) < 4*n {
				return false, errors.New("audio frame shorter than its samples")
			}
			s.Channels = append(s.Channels, unsafe.Slice((*float32)(unsafe.Pointer(&p[c][0])), n))
		}
		if err := r.Audio(s); err != nil {
			return false, err
		}
	}
	f.SetPts(f.Pts() - fromDuration(r.origin+r.From, tb))
	return true, nil
}

// RewriteMP4 writes part of stored media (a session's plaintext init and
// media segments, fragmented MP4 or WebM, in memory) to w as an H.264/AAC
// MP4, every stream decoded and encoded again (the export's encoder
// settings), its pictures and sound passed through rw's hooks. The MP4 is
// built in memory and written to w at the end; nothing else is written
// anywhere. Its index follows the media: FFmpeg 5's muxer moves it to
// the front only by reopening a file by name.
func (x Exporter) RewriteMP4(ctx context.Context, stored []byte, rw Rewrite, w io.Writer) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("rewrite: %w", err)
		}
	}()
	if rw.To > 0 && rw.To <= rw.From || rw.From < 0 {
		return fmt.Errorf("range %v to %v", rw.From, rw.To)
	}
	in, closeIn, err := openStored(stored)
	if err != nil {
		return err
	}
	defer closeIn()
	out, err := astiav.AllocOutputFormatContext(nil, "mp4", "")
	if err != nil || out == nil {
		return fmt.Errorf("output context: %v", err)
	}
	defer out.Free()
	r := &rewriter{Rewrite: rw, origin: videoOrigin(in)}
	streams := map[int]*exportStream{}
	var order []*exportStream
	defer func() {
		for _, s := range order {
			s.close()
		}
	}()
	hasVideo := false
	for _, is := range in.Streams() {
		mt := is.CodecParameters().MediaType()
		if mt != astiav.MediaTypeVideo && mt != astiav.MediaTypeAudio {
			continue
		}
		s, err := x.newExportStream(is, out, true)
		if err != nil {
			return fmt.Errorf("stream %d (%s): %w", is.Index(), is.CodecParameters().CodecID(), err)
		}
		s.rw = r
		hasVideo = hasVideo || s.video
		streams[is.Index()] = s
		order = append(order, s)
	}
	if !hasVideo {
		return errors.New("no video stream")
	}
	mw := &memoryWriter{}
	defer mw.release()
	pb, err := astiav.AllocIOContext(64<<10, true, nil, mw.seek, mw.write)
	if err != nil {
		return fmt.Errorf("io context: %w", err)
	}
	defer pb.Free()
	out.SetPb(pb)
	if err := out.WriteHeader(nil); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if err := eachPacket(ctx, in, func(pkt *astiav.Packet) error {
		s, ok := streams[pkt.StreamIndex()]
		if !ok {
			return nil
		}
		if err := s.write(out, pkt); err != nil {
			return fmt.Errorf("stream %d: %w", s.in.Index(), err)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, s := range order {
		if err := s.flush(out); err != nil {
			return fmt.Errorf("stream %d: %w", s.in.Index(), err)
		}
	}
	for _, s := range order {
		if s.video && s.encoded == 0 {
			return fmt.Errorf("no picture in %v to %v", rw.From, rw.To)
		}
	}
	if err := out.WriteTrailer(); err != nil {
		return fmt.Errorf("write trailer: %w", err)
	}
	pb.Flush()
	if _, err := w.Write(mw.buf); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// memoryWriter is a seekable output in memory: the MP4 muxer goes back
// to fill in sizes once the media is written.
type memoryWriter struct {
	buf []byte
	pos int64
}

func (m *memoryWriter) write(b []byte) (int, error) {
	end := m.pos + int64(len(b))
	if end > int64(len(m.buf)) {
		if end > int64(cap(m.buf)) {
			nb := make([]byte, end, max(end, 2*int64(cap(m.buf))))
			copy(nb, m.buf)
			m.buf = nb
		} else {
			m.buf = m.buf[:end]
		}
	}
	copy(m.buf[m.pos:], b)
	m.pos = end
	return len(b), nil
}

func (m *memoryWriter) seek(offset int64, whence int) (int64, error) {
	if whence&avseekSize != 0 {
		return int64(len(m.buf)), nil
	}
	var pos int64
	switch whence &^ avseekForce {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = m.pos + offset
	case io.SeekEnd:
		pos = int64(len(m.buf)) + offset
	default:
		return 0, fmt.Errorf("seek whence %d", whence)
	}
	if pos < 0 {
		return 0, errors.New("seek before the start")
	}
	m.pos = pos
	return pos, nil
}

// release drops the buffer: go-astiav keeps the callbacks (and so this
// writer) reachable after the context is freed.
func (m *memoryWriter) release() { m.buf = nil }
