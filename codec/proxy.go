package codec

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"slices"

	"github.com/asticode/go-astiav"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"
)

// Proxy defaults: a 640×360 H.264 review proxy at about 600 kbit/s, x264's
// superfast preset. Enough to see what happened, small enough for a
// reviewer's browser over a modest link, and cheap enough to encode for
// many cameras within the transcode stage's CPU budget. The preset was
// chosen by measurement (BenchmarkProxyPreset, 2 s of 720p30, one thread:
// frames per CPU-second; quality as SSIM of the proxy against the
// original scaled to 640×360 with the same filter, ffmpeg's ssim filter
// on 4 s of a moving test pattern at 600 kbit/s): ultrafast 435 frames/s,
// SSIM 0.9912; superfast 314, 0.9936; veryfast 202, 0.9940. superfast
// makes 1.55× veryfast's proxies on the same CPU for a loss of quality
// too small to see; ultrafast drops CABAC and the deblocking filter, six
// times superfast's loss of SSIM, for its further 1.4×.
const (
	DefaultProxyWidth   = 640
	DefaultProxyHeight  = 360
	DefaultProxyBitrate = 600_000
	DefaultProxyPreset  = "superfast"

	// proxyTimescale is the proxy track's clock, the one camvault's video
	// originals use: an original's timestamps (90 kHz in fMP4, 1 ms in
	// WebM) convert to it exactly.
	proxyTimescale = 90000
	// thumbnailQuality is the JPEG quality of thumbnails.
	thumbnailQuality = 80
	// maxSegmentFrames bounds the pictures one segment may hold (a 2 s
	// segment has ~60): a hostile segment cannot make the renderer hold
	// an unbounded number of packets.
	maxSegmentFrames = 1 << 14
)

// ProxyConfig configures a ProxyRenderer. Zero fields take the defaults.
type ProxyConfig struct {
	// Width and Height are the box the proxy fits in (default 640×360):
	// the aspect ratio is kept, a smaller picture is not enlarged, and
	// both dimensions are even (4:2:0 chroma).
	Width, Height int
	Bitrate       int    // bits per second (default 600 000)
	Threads       int    // decoder and encoder threads; 0: FFmpeg decides
	Preset        string // x264 preset (default DefaultProxyPreset)
}

func (c ProxyConfig) withDefaults() ProxyConfig {
	if c.Width <= 0 || c.Height <= 0 {
		c.Width, c.Height = DefaultProxyWidth, DefaultProxyHeight
	}
	if c.Bitrate <= 0 {
		c.Bitrate = DefaultProxyBitrate
	}
	if c.Preset == "" {
		c.Preset = DefaultProxyPreset
	}
	return c
}

// Size returns the proxy's picture size for a w×h original.
func (c ProxyConfig) Size(w, h int) (int, int) {
	c = c.withDefaults()
	if w < 1 || h < 1 {
		return 0, 0
	}
	scale := math.Min(1, math.Min(float64(c.Width)/float64(w), float64(c.Height)/float64(h)))
	pw := max(2, int(math.Round(float64(w)*scale/2))*2)
	ph := max(2, int(math.Round(float64(h)*scale/2))*2)
	return min(pw, c.Width&^1), min(ph, c.Height&^1)
}

// ProxyRenderer makes review proxies and thumbnails of original segments.
// Every call builds and frees its own decoder, scaler and encoder, so a
// renderer is safe for concurrent use and one corrupt segment cannot
// affect the next.
type ProxyRenderer struct {
	cfg ProxyConfig
}

// NewProxyRenderer returns a renderer with cfg (zero fields: defaults).
func NewProxyRenderer(cfg ProxyConfig) *ProxyRenderer {
	return &ProxyRenderer{cfg: cfg.withDefaults()}
}

// Config returns the renderer's configuration, defaults filled in.
func (r *ProxyRenderer) Config() ProxyConfig { return r.cfg }

// Proxy decodes one original segment (init: the session's init segment;
// segment: one media segment; both plaintext, fMP4 for H.264 or WebM for
// VP8, read from memory) and encodes its video into an H.264 proxy: one
// fMP4 init segment (the same for every segment of a session with the
// same configuration) and one fMP4 media segment. The proxy's first
// picture is an IDR and its pictures keep the original's presentation
// times and durations, so proxy chunk N covers the time of original chunk
// N. Audio is left out. A segment the decoder rejects gives an error
// wrapping ErrDecode.
func (r *ProxyRenderer) Proxy(ctx context.Context, init, segment []byte) (proxyInit, proxySegment []byte, err error) {
	in, err := openSegment(init, segment)
	if err != nil {
		return nil, nil, fmt.Errorf("proxy: %w", err)
	}
	defer in.close()
	if err := in.readVideo(); err != nil {
		return nil, nil, fmt.Errorf("proxy: %w", err)
	}
	w, h := r.cfg.Size(in.par.Width(), in.par.Height())
	if w == 0 {
		return nil, nil, fmt.Errorf("proxy: %w: picture size %dx%d", ErrDecode, in.par.Width(), in.par.Height())
	}
	out, err := r.transcode(ctx, in, w, h)
	if err != nil {
		return nil, nil, fmt.Errorf("proxy: %w", err)
	}
	return out.init, out.segment, nil
}

type proxyOutput struct {
	init, segment []byte
}

// proxySample is one encoded picture, in presentation (= decode) order.
type proxySample struct {
	pts  int64 // proxyTimescale
	key  bool
	avcc []byte
}

func (r *ProxyRenderer) transcode(ctx context.Context, in *segmentInput, w, h int) (*proxyOutput, error) {
	dec, err := NewDecoder(in.par, r.cfg.Threads, true)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	sc, err := NewScaler(w, h, astiav.PixelFormatYuv420P)
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	outTB := astiav.NewRational(1, proxyTimescale)
	enc, err := NewH264Encoder(H264Config{Width: w, Height: h, TimeBase: outTB, FrameRate: in.frameRate(),
		Bitrate: r.cfg.Bitrate, Preset: r.cfg.Preset, Threads: r.cfg.Threads})
	if err != nil {
		return nil, err
	}
	defer enc.Close()

	samples := make([]proxySample, 0, len(in.pkts))
	collect := func(p *astiav.Packet) error {
		if p.Pts() != p.Dts() {
			return fmt.Errorf("encoder reordered pictures (pts %d, dts %d)", p.Pts(), p.Dts())
		}
		avcc, err := annexBToAVCC(p.Data())
		if err != nil {
			return fmt.Errorf("encoder output: %w", err)
		}
		samples = append(samples, proxySample{pts: p.Pts(), key: p.Flags().Has(astiav.PacketFlagKey), avcc: avcc})
		return nil
	}
	lastPts := int64(math.MinInt64)
	encode := func(f *astiav.Frame) error {
		if f.Pts() == astiav.NoPtsValue {
			return fmt.Errorf("%w: a picture without a timestamp", ErrDecode)
		}
		pts := astiav.RescaleQ(f.Pts(), in.tb, outTB)
		if pts <= lastPts {
			return fmt.Errorf("%w: picture at %d after %d", ErrDecode, pts, lastPts)
		}
		lastPts = pts
		scaled, err := sc.Scale(f)
		if err != nil {
			return err
		}
		scaled.SetPts(pts)
		scaled.SetPictureType(astiav.PictureTypeNone)
		return enc.Encode(scaled, collect)
	}
	for _, p := range in.pkts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := dec.Decode(p, encode); err != nil {
			return nil, err
		}
	}
	if err := dec.Decode(nil, encode); err != nil {
		return nil, err
	}
	if err := enc.Encode(nil, collect); err != nil {
		return nil, err
	}
	if want := in.shown(); len(samples) != want {
		return nil, fmt.Errorf("%w: %d pictures decoded from %d packets that show one", ErrDecode, len(samples), want)
	}
	if !samples[0].key {
		return nil, errors.New("encoder did not start with a keyframe")
	}
	end := astiav.RescaleQ(in.end, in.tb, outTB)
	return muxProxy(enc.ExtraData(), in.seq, samples, end)
}

// muxProxy writes the proxy's fMP4 init and media segment. Each sample
// lasts until the next; the last until the original segment's end.
func muxProxy(extradata []byte, seq uint32, samples []proxySample, end int64) (*proxyOutput, error) {
	sps, pps, err := parameterSets(extradata)
	if err != nil {
		return nil, err
	}
	var ib seekablebuffer.Buffer
	initBox := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: 1, TimeScale: proxyTimescale, Codec: &mp4.CodecH264{SPS: sps, PPS: pps}}}}
	if err := initBox.Marshal(&ib); err != nil {
		return nil, fmt.Errorf("proxy init segment: %w", err)
	}
	if samples[0].pts < 0 {
		return nil, fmt.Errorf("%w: negative timestamp %d", ErrDecode, samples[0].pts)
	}
	out := make([]*fmp4.Sample, len(samples))
	for i, s := range samples {
		next := end
		if i+1 < len(samples) {
			next = samples[i+1].pts
		}
		d := next - s.pts
		if d <= 0 || d > math.MaxUint32 {
			if i+1 < len(samples) {
				return nil, fmt.Errorf("proxy: sample %d lasts %d ticks", i, d)
			}
			d = 1 // an original whose last picture states no duration
			if i > 0 {
				d = int64(out[i-1].Duration)
			}
		}
		out[i] = &fmp4.Sample{Duration: uint32(d), IsNonSyncSample: !s.key, Payload: s.avcc}
	}
	var sb seekablebuffer.Buffer
	part := fmp4.Part{SequenceNumber: seq, Tracks: []*fmp4.PartTrack{{ID: 1, BaseTime: uint64(samples[0].pts), Samples: out}}}
	if err := part.Marshal(&sb); err != nil {
		return nil, fmt.Errorf("proxy media segment: %w", err)
	}
	return &proxyOutput{init: ib.Bytes(), segment: sb.Bytes()}, nil
}

// parameterSets takes the SPS and PPS from x264's global header (Annex B).
func parameterSets(extradata []byte) (sps, pps []byte, err error) {
	var au h264.AnnexB
	if err := au.Unmarshal(extradata); err != nil {
		return nil, nil, fmt.Errorf("encoder header: %w", err)
	}
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	if sps == nil || pps == nil {
		return nil, nil, errors.New("encoder header lacks SPS or PPS")
	}
	return sps, pps, nil
}

// annexBToAVCC reframes an encoded picture for MP4: each NAL unit with a
// 4-byte length instead of a start code.
func annexBToAVCC(b []byte) ([]byte, error) {
	var au h264.AnnexB
	if err := au.Unmarshal(b); err != nil {
		return nil, err
	}
	return h264.AVCC(au).Marshal()
}

// Thumbnail decodes the segment's first keyframe, and only that, and
// returns it as a JPEG of the proxy's size. A keyframe the decoder
// rejects gives an error wrapping ErrDecode.
func (r *ProxyRenderer) Thumbnail(ctx context.Context, init, segment []byte) ([]byte, error) {
	in, err := openSegment(init, segment)
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	defer in.close()
	pkt, err := in.firstKeyframe()
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	defer pkt.Free()
	w, h := r.cfg.Size(in.par.Width(), in.par.Height())
	if w == 0 {
		return nil, fmt.Errorf("thumbnail: %w: picture size %dx%d", ErrDecode, in.par.Width(), in.par.Height())
	}
	// One picture: threads would only add start-up cost.
	dec, err := NewDecoder(in.par, 1, true)
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	defer dec.Close()
	sc, err := NewScaler(w, h, astiav.PixelFormatYuv420P)
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	defer sc.Close()
	var out []byte
	toJPEG := func(f *astiav.Frame) error {
		if out != nil {
			return nil
		}
		scaled, err := sc.Scale(f)
		if err != nil {
			return err
		}
		out, err = frameJPEG(scaled)
		return err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := dec.Decode(pkt, toJPEG); err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	if err := dec.Decode(nil, toJPEG); err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	if out == nil {
		return nil, fmt.Errorf("thumbnail: %w: the keyframe decoded to no picture", ErrDecode)
	}
	return out, nil
}

// frameJPEG encodes a yuv420p picture. The planes are copied out with
// FFmpeg's own av_image_copy_to_buffer (go-astiav's ToImage reads past
// the chroma planes of some sizes). The picture is video range (16–235)
// and JPEG full range, so the samples are stretched: without it
// thumbnails look washed out.
func frameJPEG(f *astiav.Frame) ([]byte, error) {
	w, h := f.Width(), f.Height()
	if f.PixelFormat() != astiav.PixelFormatYuv420P || w%2 != 0 || h%2 != 0 {
		return nil, fmt.Errorf("jpeg: picture %dx%d %s, want even yuv420p", w, h, f.PixelFormat())
	}
	n, err := f.ImageBufferSize(1)
	if err != nil || n != w*h*3/2 {
		return nil, fmt.Errorf("jpeg: picture buffer of %d bytes (%v)", n, err)
	}
	buf := make([]byte, n)
	if _, err := f.ImageCopyToBuffer(buf, 1); err != nil {
		return nil, fmt.Errorf("jpeg: copy picture: %w", err)
	}
	for i, v := range buf[:w*h] {
		buf[i] = lumaFull[v]
	}
	for i, v := range buf[w*h:] {
		buf[w*h+i] = chromaFull[v]
	}
	cw := w / 2
	img := &image.YCbCr{
		Y: buf[:w*h], Cb: buf[w*h : w*h+cw*h/2], Cr: buf[w*h+cw*h/2:],
		YStride: w, CStride: cw, SubsampleRatio: image.YCbCrSubsampleRatio420, Rect: image.Rect(0, 0, w, h),
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, img, &jpeg.Options{Quality: thumbnailQuality}); err != nil {
		return nil, fmt.Errorf("jpeg: %w", err)
	}
	return out.Bytes(), nil
}

// lumaFull and chromaFull map video-range samples to full range.
var lumaFull, chromaFull = func() (l, c [256]byte) {
	for i := range 256 {
		l[i] = byte(min(255, max(0, int(math.Round(float64(i-16)*255/219)))))
		c[i] = byte(min(255, max(0, int(math.Round(float64(i-128)*255/224+128)))))
	}
	return
}()

// segmentInput is one original segment opened for decoding: its first
// video stream and, once read, that stream's packets.
type segmentInput struct {
	fc      *astiav.FormatContext
	closeFC func()
	stream  *astiav.Stream
	par     *astiav.CodecParameters
	tb      astiav.Rational
	seq     uint32 // the original's fragment sequence number, 1 if none

	pkts []*astiav.Packet
	end  int64 // end of the last picture, stream time base
}

// openSegment opens init followed by segment, from memory, as the
// container init's magic says (WebM or MP4), without probing: the headers
// describe the streams.
func openSegment(init, segment []byte) (_ *segmentInput, err error) {
	if len(init) == 0 || len(segment) == 0 {
		return nil, errors.New("empty init or media segment")
	}
	format := "mp4"
	if IsEBML(init) {
		format = "matroska"
	}
	// Read in place: a job's segment is already the stage's copy, and a
	// thumbnail reads only up to its first keyframe.
	fc, closeFC, err := openReaderInput(newPartsReader(init, segment), format, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	in := &segmentInput{fc: fc, closeFC: closeFC, seq: fragmentSeq(segment)}
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	for _, s := range fc.Streams() {
		if s.CodecParameters().MediaType() == astiav.MediaTypeVideo {
			in.stream, in.par, in.tb = s, s.CodecParameters(), s.TimeBase()
			break
		}
	}
	if in.stream == nil {
		return nil, fmt.Errorf("%w: no video stream", ErrDecode)
	}
	if in.tb.Num() <= 0 || in.tb.Den() <= 0 {
		return nil, fmt.Errorf("%w: video time base %s", ErrDecode, in.tb)
	}
	return in, nil
}

// fragmentSeq reads the sequence number of an fMP4 fragment (moof, then
// mfhd first inside it); other containers have none and get 1.
func fragmentSeq(seg []byte) uint32 {
	if len(seg) >= 24 && string(seg[4:8]) == "moof" && string(seg[12:16]) == "mfhd" {
		if n := binary.BigEndian.Uint32(seg[20:24]); n > 0 {
			return n
		}
	}
	return 1
}

// readVideo reads every packet of the video stream, checking that it
// starts on a keyframe and that each has a timestamp.
func (in *segmentInput) readVideo() error {
	pkt := astiav.AllocPacket()
	if pkt == nil {
		return errors.New("cannot allocate a packet")
	}
	defer pkt.Free()
	in.end = math.MinInt64
	for {
		if err := in.fc.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				break
			}
			return fmt.Errorf("%w: read: %v", ErrDecode, err)
		}
		if pkt.StreamIndex() != in.stream.Index() {
			pkt.Unref()
			continue
		}
		if len(in.pkts) == 0 && !pkt.Flags().Has(astiav.PacketFlagKey) {
			pkt.Unref()
			return fmt.Errorf("%w: the segment does not start with a keyframe", ErrDecode)
		}
		if pkt.Pts() == astiav.NoPtsValue {
			pkt.Unref()
			return fmt.Errorf("%w: a packet without a timestamp", ErrDecode)
		}
		if len(in.pkts) >= maxSegmentFrames {
			pkt.Unref()
			return fmt.Errorf("%w: more than %d pictures in one segment", ErrDecode, maxSegmentFrames)
		}
		in.end = max(in.end, pkt.Pts()+max(pkt.Duration(), 0))
		c := astiav.AllocPacket()
		if c == nil {
			pkt.Unref()
			return errors.New("cannot allocate a packet")
		}
		c.MoveRef(pkt)
		in.pkts = append(in.pkts, c)
	}
	if len(in.pkts) == 0 {
		return fmt.Errorf("%w: no video in the segment", ErrDecode)
	}
	return nil
}

// shown is the number of pictures the packets should decode to: one per
// packet, except VP8 frames the encoder marked as not to be shown (an
// alternate reference), which update the decoder's state only.
func (in *segmentInput) shown() int {
	n := 0
	for _, p := range in.pkts {
		if packetShown(in.par.CodecID(), p) {
			n++
		}
	}
	return n
}

// packetShown reports whether a video packet decodes to a picture: false
// only for a VP8 frame whose show_frame bit (RFC 6386, section 9.1) is
// clear.
func packetShown(id astiav.CodecID, p *astiav.Packet) bool {
	if id != astiav.CodecIDVp8 {
		return true
	}
	data := p.Data() // a copy: VP8 only
	return len(data) > 0 && data[0]&0x10 != 0
}

// frameRate estimates the nominal rate x264 plans its bits with: pictures
// per second over the segment, rounded to a whole number so that every
// segment of a session gets the same (it is written into the SPS, and
// the proxy's init segment must not change from one segment to the next).
func (in *segmentInput) frameRate() astiav.Rational {
	pts := make([]int64, len(in.pkts))
	for i, p := range in.pkts {
		pts[i] = p.Pts()
	}
	slices.Sort(pts)
	fps := 30.0
	if span := in.end - pts[0]; len(pts) > 1 && span > 0 {
		fps = float64(len(pts)) / (float64(span) * float64(in.tb.Num()) / float64(in.tb.Den()))
	}
	return astiav.NewRational(int(min(240, max(1, math.Round(fps)))), 1)
}

// firstKeyframe reads up to the first video keyframe and returns it.
func (in *segmentInput) firstKeyframe() (*astiav.Packet, error) {
	pkt := astiav.AllocPacket()
	if pkt == nil {
		return nil, errors.New("cannot allocate a packet")
	}
	for {
		if err := in.fc.ReadFrame(pkt); err != nil {
			pkt.Free()
			if errors.Is(err, astiav.ErrEof) {
				return nil, fmt.Errorf("%w: no video keyframe in the segment", ErrDecode)
			}
			return nil, fmt.Errorf("%w: read: %v", ErrDecode, err)
		}
		if pkt.StreamIndex() == in.stream.Index() && pkt.Flags().Has(astiav.PacketFlagKey) {
			return pkt, nil
		}
		pkt.Unref()
	}
}

func (in *segmentInput) close() {
	for _, p := range in.pkts {
		p.Free()
	}
	in.pkts = nil
	if in.closeFC != nil {
		in.closeFC()
		in.closeFC = nil
	}
}
