package codec

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/asticode/go-astiav"
)

// Encoder encodes frames into packets. Not safe for concurrent use; Close
// frees it.
type Encoder struct {
	cc  *astiav.CodecContext
	pkt *astiav.Packet
}

// H264Config configures NewH264Encoder (libx264).
type H264Config struct {
	Width, Height int
	// TimeBase of the frames' timestamps, which the packets keep.
	TimeBase astiav.Rational
	// FrameRate is the nominal rate, which x264's rate control plans
	// with; the timestamps stay authoritative.
	FrameRate astiav.Rational
	Bitrate   int    // bits per second (average); 0: constant quality CRF
	CRF       int    // x264 constant rate factor, when Bitrate is 0
	Preset    string // x264 preset, e.g. "veryfast"
	Threads   int    // 0: FFmpeg/x264 choose from the cores
	// GOP is the keyframe interval in frames; 0 leaves x264's default.
	GOP int
	// CapRate holds the rate to Bitrate over a one-second buffer, as a
	// camera's encoder does for its uplink.
	CapRate bool
}

// NewH264Encoder opens libx264 for yuv420p pictures. The parameter sets
// go to the codec's extradata (global header), not into the packets, so
// an MP4 init segment can carry them. B-frames are off: decode order is
// presentation order, so each packet's decode time is its picture's
// presentation time, and a derived stream keeps the original's timestamps
// exactly, whatever the original's own frame reordering.
func NewH264Encoder(cfg H264Config) (_ *Encoder, err error) {
	if cfg.Width < 2 || cfg.Height < 2 || cfg.Width%2 != 0 || cfg.Height%2 != 0 {
		return nil, fmt.Errorf("h264 encoder: size %dx%d (must be even)", cfg.Width, cfg.Height)
	}
	if cfg.TimeBase.Num() <= 0 || cfg.TimeBase.Den() <= 0 {
		return nil, fmt.Errorf("h264 encoder: time base %s", cfg.TimeBase)
	}
	if cfg.FrameRate.Num() <= 0 || cfg.FrameRate.Den() <= 0 {
		return nil, fmt.Errorf("h264 encoder: frame rate %s", cfg.FrameRate)
	}
	if cfg.Bitrate < 0 || cfg.Bitrate == 0 && (cfg.CRF <= 0 || cfg.CRF > 51) {
		return nil, fmt.Errorf("h264 encoder: bitrate %d, CRF %d", cfg.Bitrate, cfg.CRF)
	}
	c := astiav.FindEncoderByName("libx264")
	if c == nil {
		return nil, errors.New("h264 encoder: FFmpeg has no libx264")
	}
	e := &Encoder{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.cc = astiav.AllocCodecContext(c); e.cc == nil {
		return nil, errors.New("h264 encoder: cannot allocate a context")
	}
	e.cc.SetWidth(cfg.Width)
	e.cc.SetHeight(cfg.Height)
	e.cc.SetPixelFormat(astiav.PixelFormatYuv420P)
	e.cc.SetTimeBase(cfg.TimeBase)
	e.cc.SetFramerate(cfg.FrameRate)
	if cfg.Bitrate > 0 {
		e.cc.SetBitRate(int64(cfg.Bitrate))
	}
	e.cc.SetSampleAspectRatio(astiav.NewRational(1, 1))
	e.cc.SetThreadCount(cfg.Threads)
	e.cc.SetFlags(e.cc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	opts := astiav.NewDictionary()
	defer opts.Free()
	preset := cfg.Preset
	if preset == "" {
		preset = "veryfast"
	}
	options := [][2]string{{"preset", preset}, {"bf", "0"}}
	if cfg.GOP > 0 {
		e.cc.SetGopSize(cfg.GOP)
		options = append(options, [2]string{"sc_threshold", "0"}) // keyframes on the interval only
	}
	if cfg.CapRate && cfg.Bitrate > 0 {
		options = append(options, [2]string{"maxrate", strconv.Itoa(cfg.Bitrate)}, [2]string{"bufsize", strconv.Itoa(cfg.Bitrate)})
	}
	if cfg.Bitrate == 0 {
		options = append(options, [2]string{"crf", strconv.Itoa(cfg.CRF)})
	}
	for _, o := range options {
		if err := opts.Set(o[0], o[1], 0); err != nil {
			return nil, fmt.Errorf("h264 encoder: option %s: %w", o[0], err)
		}
	}
	if err := e.cc.Open(c, opts); err != nil {
		return nil, fmt.Errorf("h264 encoder: open (%dx%d, preset %s): %w", cfg.Width, cfg.Height, preset, err)
	}
	if e.pkt = astiav.AllocPacket(); e.pkt == nil {
		return nil, errors.New("h264 encoder: cannot allocate a packet")
	}
	return e, nil
}

// NewAACEncoder opens FFmpeg's AAC encoder (LC) for planar float frames
// of FrameSize samples (the last may be shorter) at sampleRate.
func NewAACEncoder(sampleRate int, layout astiav.ChannelLayout, bitrate int) (_ *Encoder, err error) {
	c := astiav.FindEncoder(astiav.CodecIDAac)
	if c == nil {
		return nil, errors.New("aac encoder: FFmpeg has none")
	}
	e := &Encoder{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.cc = astiav.AllocCodecContext(c); e.cc == nil {
		return nil, errors.New("aac encoder: cannot allocate a context")
	}
	e.cc.SetSampleFormat(astiav.SampleFormatFltp)
	e.cc.SetSampleRate(sampleRate)
	e.cc.SetChannelLayout(layout)
	e.cc.SetChannels(layout.NbChannels())
	e.cc.SetTimeBase(astiav.NewRational(1, sampleRate))
	e.cc.SetBitRate(int64(bitrate))
	e.cc.SetFlags(e.cc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	if err := e.cc.Open(c, nil); err != nil {
		return nil, fmt.Errorf("aac encoder: open (%d Hz, %d channels): %w", sampleRate, layout.NbChannels(), err)
	}
	if e.pkt = astiav.AllocPacket(); e.pkt == nil {
		return nil, errors.New("aac encoder: cannot allocate a packet")
	}
	return e, nil
}

// Encode sends one frame (nil flushes the encoder at the end) and calls
// emit for each packet the encoder then returns, its timestamps in the
// encoder's time base. The packet belongs to the encoder and is valid
// only during emit.
func (e *Encoder) Encode(frame *astiav.Frame, emit func(*astiav.Packet) error) error {
	if err := e.cc.SendFrame(frame); err != nil && !errors.Is(err, astiav.ErrEof) {
		return fmt.Errorf("encode: %w", err)
	}
	for {
		err := e.cc.ReceivePacket(e.pkt)
		if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		err = emit(e.pkt)
		e.pkt.Unref()
		if err != nil {
			return err
		}
	}
}

// ExtraData is the codec's global header: H.264 parameter sets (Annex B),
// or the AAC AudioSpecificConfig.
func (e *Encoder) ExtraData() []byte { return e.cc.ExtraData() }

// FrameSize is the number of samples per audio frame the encoder takes.
func (e *Encoder) FrameSize() int { return e.cc.FrameSize() }

// TimeBase is the time base of the packets' timestamps.
func (e *Encoder) TimeBase() astiav.Rational { return e.cc.TimeBase() }

// CodecParameters fills cp with the encoder's output description, for a
// muxer's stream.
func (e *Encoder) CodecParameters(cp *astiav.CodecParameters) error {
	return e.cc.ToCodecParameters(cp)
}

// Close frees the encoder; it is safe to call more than once.
func (e *Encoder) Close() {
	if e.pkt != nil {
		e.pkt.Free()
		e.pkt = nil
	}
	if e.cc != nil {
		e.cc.Free()
		e.cc = nil
	}
}
