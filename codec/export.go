package codec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/asticode/go-astiav"
)

// Export defaults: video the camera sent as VP8 becomes H.264 of
// near-transparent quality (CRF 18, the point x264's authors call
// visually lossless for most content); it is evidence, not a preview.
const (
	DefaultExportPreset = "veryfast"
	DefaultExportCRF    = 18
	// DefaultExportAudioBitrate is the AAC bitrate per channel.
	DefaultExportAudioBitrate = 96_000
	aacSampleRate             = 48000
	aacFrameSize              = 1024
)

// Exporter writes a session's stored media as the export's H.264/AAC MP4,
// whatever the camera sent: H.264 video and AAC audio are copied packet
// for packet (never re-encoded: the file carries the camera's bytes); VP8
// (or any other) video is transcoded to H.264 and Opus (or any other)
// audio to AAC, on the original timestamps. It implements
// evidence.MediaExporter. The zero value uses the defaults.
type Exporter struct {
	Preset       string // x264 preset for transcoded video (default veryfast)
	CRF          int    // x264 CRF for transcoded video (default 18)
	AudioBitrate int    // AAC bits per second per channel (default 96 000)
	Threads      int    // decoder and encoder threads; 0: FFmpeg decides
}

// ExportMP4 reads stored (a session's init segment and media segments:
// fragmented MP4 or WebM, plaintext, from memory) and writes outPath as a
// regular MP4 with its index at the front. On error the partial file is
// removed: it holds plaintext.
func (x Exporter) ExportMP4(ctx context.Context, stored []byte, outPath string) (err error) {
	defer func() {
		if err != nil {
			os.Remove(outPath)
			err = fmt.Errorf("export %s: %w", outPath, err)
		}
	}()
	if len(stored) == 0 {
		return errors.New("no media")
	}
	format := "mp4"
	if IsEBML(stored) {
		format = "matroska"
	}
	// Probing reads the frame rate and the audio layout, which the
	// encoders need before the first frame is decoded.
	in, closeIn, err := openMemoryInput(stored, format, true)
	if err != nil {
		return err
	}
	defer closeIn()
	out, err := astiav.AllocOutputFormatContext(nil, "mp4", outPath)
	if err != nil || out == nil {
		return fmt.Errorf("output context: %v", err)
	}
	defer out.Free()

	streams := map[int]*exportStream{}
	var order []*exportStream
	defer func() {
		for _, s := range order {
			s.close()
		}
	}()
	for _, is := range in.Streams() {
		mt := is.CodecParameters().MediaType()
		if mt != astiav.MediaTypeVideo && mt != astiav.MediaTypeAudio {
			continue
		}
		s, err := x.newExportStream(is, out, false)
		if err != nil {
			return fmt.Errorf("stream %d (%s): %w", is.Index(), is.CodecParameters().CodecID(), err)
		}
		streams[is.Index()] = s
		order = append(order, s)
	}
	if len(order) == 0 {
		return errors.New("no audio or video stream")
	}
	pb, err := astiav.OpenIOContext(outPath, astiav.NewIOContextFlags(astiav.IOContextFlagWrite))
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer func() {
		if cerr := pb.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	out.SetPb(pb)
	opts := astiav.NewDictionary()
	defer opts.Free()
	if err := opts.Set("movflags", "+faststart", 0); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	if err := out.WriteHeader(opts); err != nil {
		return fmt.Errorf("write header: %w", err)
	}

	if err := eachPacket(ctx, in, func(pkt *astiav.Packet) error {
		s, ok := streams[pkt.StreamIndex()]
		if !ok {
			return nil
		}
		if !s.video || packetShown(s.in.CodecParameters().CodecID(), pkt) {
			s.packets++
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
		if s.video && s.enc != nil && s.encoded != s.packets {
			return fmt.Errorf("stream %d: %d pictures encoded from %d shown ones", s.in.Index(), s.encoded, s.packets)
		}
	}
	if err := out.WriteTrailer(); err != nil {
		return fmt.Errorf("write trailer: %w", err)
	}
	return nil
}

// exportStream is one stream of an export: copied, or decoded and
// encoded again.
type exportStream struct {
	in, out *astiav.Stream
	video   bool

	// Transcoding only.
	dec    *Decoder
	sc     *Scaler
	framer *AudioFramer
	enc    *Encoder
	tb     astiav.Rational // timestamps of frames going into the encoder

	packets, encoded int
	lastPts          int64
	// pending holds back the last encoded picture until the next one
	// gives its duration: x264's packets carry none, and an MP4 muxer
	// leaves a last picture of no duration out of the edit list, so
	// players would drop it.
	pending *astiav.Packet
	lastDur int64

	rw *rewriter // a rewrite's range and hooks; nil for an export
}

// transcode decodes and encodes even a stream it could copy (a rewrite
// changes the pictures and the sound).
func (x Exporter) newExportStream(is *astiav.Stream, out *astiav.FormatContext, transcode bool) (_ *exportStream, err error) {
	par := is.CodecParameters()
	s := &exportStream{in: is, video: par.MediaType() == astiav.MediaTypeVideo, lastPts: math.MinInt64}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.out = out.NewStream(nil); s.out == nil {
		return nil, errors.New("cannot add an output stream")
	}
	copyCodec := astiav.CodecIDH264
	if !s.video {
		copyCodec = astiav.CodecIDAac
	}
	if par.CodecID() == copyCodec && !transcode {
		if err := par.Copy(s.out.CodecParameters()); err != nil {
			return nil, fmt.Errorf("copy codec parameters: %w", err)
		}
		s.out.CodecParameters().SetCodecTag(0)
		s.out.SetTimeBase(is.TimeBase())
		return s, nil
	}
	if s.dec, err = NewDecoder(par, x.Threads, false); err != nil {
		return nil, err
	}
	if s.video {
		w, h := par.Width()&^1, par.Height()&^1
		if w < 2 || h < 2 {
			return nil, fmt.Errorf("picture size %dx%d", par.Width(), par.Height())
		}
		if s.sc, err = NewScaler(w, h, astiav.PixelFormatYuv420P); err != nil {
			return nil, err
		}
		rate := is.AvgFrameRate()
		if rate.Num() <= 0 || rate.Den() <= 0 {
			rate = is.RFrameRate()
		}
		if rate.Num() <= 0 || rate.Den() <= 0 || rate.Float64() > 240 {
			rate = astiav.NewRational(30, 1)
		}
		s.tb = is.TimeBase()
		preset, crf := x.Preset, x.CRF
		if preset == "" {
			preset = DefaultExportPreset
		}
		if crf <= 0 {
			crf = DefaultExportCRF
		}
		if s.enc, err = NewH264Encoder(H264Config{Width: w, Height: h, TimeBase: s.tb, FrameRate: rate, CRF: crf, Preset: preset, Threads: x.Threads}); err != nil {
			return nil, err
		}
	} else {
		layout := par.ChannelLayout()
		if layout.NbChannels() < 1 {
			return nil, errors.New("audio without channels")
		}
		if layout.NbChannels() > 2 {
			layout = astiav.ChannelLayoutStereo
		} else if layout.NbChannels() == 1 {
			layout = astiav.ChannelLayoutMono
		} else {
			layout = astiav.ChannelLayoutStereo
		}
		bitrate := x.AudioBitrate
		if bitrate <= 0 {
			bitrate = DefaultExportAudioBitrate
		}
		s.tb = astiav.NewRational(1, aacSampleRate)
		if s.enc, err = NewAACEncoder(aacSampleRate, layout, bitrate*layout.NbChannels()); err != nil {
			return nil, err
		}
	}
	if err := s.enc.CodecParameters(s.out.CodecParameters()); err != nil {
		return nil, fmt.Errorf("encoder parameters: %w", err)
	}
	s.out.SetTimeBase(s.enc.TimeBase())
	return s, nil
}

// write copies a packet, or decodes it and encodes what comes out.
func (s *exportStream) write(out *astiav.FormatContext, pkt *astiav.Packet) error {
	if s.enc == nil {
		pkt.RescaleTs(s.in.TimeBase(), s.out.TimeBase())
		pkt.SetStreamIndex(s.out.Index())
		pkt.SetPos(-1)
		return out.WriteInterleavedFrame(pkt) // takes the packet's data
	}
	return s.dec.Decode(pkt, func(f *astiav.Frame) error { return s.frame(out, f) })
}

// frame takes one decoded frame to the encoder.
func (s *exportStream) frame(out *astiav.FormatContext, f *astiav.Frame) error {
	if f.Pts() == astiav.NoPtsValue {
		return fmt.Errorf("%w: a frame without a timestamp", ErrDecode)
	}
	if s.video {
		if f.Pts() <= s.lastPts {
			return fmt.Errorf("%w: picture at %d after %d", ErrDecode, f.Pts(), s.lastPts)
		}
		s.lastPts = f.Pts()
		scaled, err := s.sc.Scale(f)
		if err != nil {
			return err
		}
		if s.rw != nil {
			keep, err := s.rw.video(s, scaled)
			if err != nil || !keep {
				return err
			}
		}
		scaled.SetPictureType(astiav.PictureTypeNone)
		return s.enc.Encode(scaled, func(p *astiav.Packet) error { return s.mux(out, p) })
	}
	if s.framer == nil {
		var err error
		s.framer, err = NewAudioFramer(AudioFormat{SampleRate: f.SampleRate(), SampleFormat: f.SampleFormat(), Layout: f.ChannelLayout(), TimeBase: s.in.TimeBase()},
			aacSampleRate, astiav.SampleFormatFltp, s.enc.cc.ChannelLayout(), aacFrameSize)
		if err != nil {
			return err
		}
	}
	return s.framer.Push(f, s.encodeAudio(out))
}

func (s *exportStream) encodeAudio(out *astiav.FormatContext) func(*astiav.Frame) error {
	return func(f *astiav.Frame) error {
		if s.rw != nil {
			keep, err := s.rw.audio(f)
			if err != nil || !keep {
				return err
			}
		}
		return s.enc.Encode(f, func(p *astiav.Packet) error { return s.mux(out, p) })
	}
}

func (s *exportStream) mux(out *astiav.FormatContext, p *astiav.Packet) error {
	s.encoded++
	p.RescaleTs(s.enc.TimeBase(), s.out.TimeBase())
	p.SetStreamIndex(s.out.Index())
	if !s.video {
		return out.WriteInterleavedFrame(p)
	}
	if s.pending != nil {
		if err := s.writePending(out, p.Pts()-s.pending.Pts()); err != nil {
			return err
		}
	} else if s.pending = astiav.AllocPacket(); s.pending == nil {
		return errors.New("cannot allocate a packet")
	}
	s.pending.MoveRef(p)
	return nil
}

// writePending writes the held-back picture with its duration (the last
// one, with its predecessor's).
func (s *exportStream) writePending(out *astiav.FormatContext, dur int64) error {
	if dur <= 0 {
		dur = s.lastDur
	}
	s.lastDur = dur
	s.pending.SetDuration(dur)
	return out.WriteInterleavedFrame(s.pending) // leaves it blank
}

// flush drains the decoder, the audio framer and the encoder.
func (s *exportStream) flush(out *astiav.FormatContext) error {
	if s.enc == nil {
		return nil
	}
	if err := s.dec.Decode(nil, func(f *astiav.Frame) error { return s.frame(out, f) }); err != nil {
		return err
	}
	if s.framer != nil {
		if err := s.framer.Push(nil, s.encodeAudio(out)); err != nil {
			return err
		}
	}
	if err := s.enc.Encode(nil, func(p *astiav.Packet) error { return s.mux(out, p) }); err != nil {
		return err
	}
	if s.pending != nil {
		return s.writePending(out, 0)
	}
	return nil
}

func (s *exportStream) close() {
	if s.pending != nil {
		s.pending.Free()
	}
	if s.dec != nil {
		s.dec.Close()
	}
	if s.sc != nil {
		s.sc.Close()
	}
	if s.framer != nil {
		s.framer.Close()
	}
	if s.enc != nil {
		s.enc.Close()
	}
}

// MediaStream is one audio or video stream of a media file as a demuxer
// reads it: what verification compares with the sealed originals.
type MediaStream struct {
	Codec   string   // FFmpeg's codec name: h264, aac, vp8, opus
	Packets [][]byte // in file order, every packet (edit lists ignored)
	// Start and End: the first packet's presentation time and the end of
	// the last one.
	Start, End time.Duration
}

// ReadStreams demuxes a media file and returns its audio and video
// streams in file order, every packet in it included (an MP4's audio
// priming, hidden from playback by an edit list, too).
func ReadStreams(path string) ([]MediaStream, error) {
	in := astiav.AllocFormatContext()
	if in == nil {
		return nil, errors.New("read streams: cannot allocate input context")
	}
	defer in.Free()
	opts := astiav.NewDictionary()
	defer opts.Free()
	if err := opts.Set("ignore_editlist", "1", 0); err != nil {
		return nil, fmt.Errorf("read streams: options: %w", err)
	}
	if err := in.OpenInput(path, nil, opts); err != nil {
		return nil, fmt.Errorf("read streams: open %s: %w", path, err)
	}
	defer in.CloseInput()
	if err := in.FindStreamInfo(nil); err != nil {
		return nil, fmt.Errorf("read streams: stream info: %w", err)
	}
	index := map[int]int{}
	var out []MediaStream
	var tbs []astiav.Rational
	var first []bool
	for _, s := range in.Streams() {
		if mt := s.CodecParameters().MediaType(); mt == astiav.MediaTypeVideo || mt == astiav.MediaTypeAudio {
			index[s.Index()] = len(out)
			name := "unknown"
			if c := astiav.FindDecoder(s.CodecParameters().CodecID()); c != nil {
				name = c.Name()
			}
			out = append(out, MediaStream{Codec: name})
			tbs = append(tbs, s.TimeBase())
			first = append(first, true)
		}
	}
	pkt := astiav.AllocPacket()
	if pkt == nil {
		return nil, errors.New("read streams: cannot allocate a packet")
	}
	defer pkt.Free()
	toDur := func(ts int64, tb astiav.Rational) time.Duration {
		return time.Duration(astiav.RescaleQ(ts, tb, astiav.NewRational(1, int(time.Second))))
	}
	for {
		if err := in.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				return out, nil
			}
			return nil, fmt.Errorf("read streams: %s: %w", path, err)
		}
		if i, ok := index[pkt.StreamIndex()]; ok {
			s := &out[i]
			s.Packets = append(s.Packets, pkt.Data()) // Data copies into Go memory
			if pts := pkt.Pts(); pts != astiav.NoPtsValue {
				start, end := toDur(pts, tbs[i]), toDur(pts+max(pkt.Duration(), 0), tbs[i])
				if first[i] || start < s.Start {
					s.Start = start
				}
				if first[i] || end > s.End {
					s.End = end
				}
				first[i] = false
			}
		}
		pkt.Unref()
	}
}
