package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpvp8"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"camvault/media"
)

// ErrUnsupportedCodec is returned for a track camvault does not record.
var ErrUnsupportedCodec = errors.New("unsupported codec")

// aacSamplesPerFrame is the frame length of AAC-LC.
const aacSamplesPerFrame = 1024

// Depacketizer turns one track's RTP packets into access units. The RTP
// decoders keep no reference to packet buffers we rely on: every emitted
// access unit owns its bytes, because the transport reuses its buffers.
type Depacketizer interface {
	// Decode takes the track's next packet, stamped pts in the track's
	// clock rate and received at now. An error returned with access units
	// says what was dropped from them; the units themselves are whole.
	Decode(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.AccessUnit, error)
	// Reset forgets a partly received unit after packets were lost, so
	// fragments either side of the hole are never joined into one; video
	// waits for the next keyframe.
	Reset() error
}

// NewTrack builds the media.Track and Depacketizer for an RTP format. A
// codec camvault does not record is ErrUnsupportedCodec.
func NewTrack(id int, f format.Format) (media.Track, Depacketizer, error) {
	switch f := f.(type) {
	case *format.H264:
		if f.PacketizationMode > 1 {
			return media.Track{}, nil, fmt.Errorf("%w: H.264 packetization-mode %d", ErrUnsupportedCodec, f.PacketizationMode)
		}
		dec, err := f.CreateDecoder()
		if err != nil {
			return media.Track{}, nil, fmt.Errorf("h264 decoder: %w", err)
		}
		sps, pps := f.SafeParams()
		t := media.Track{ID: id, Codec: media.CodecH264, ClockRate: f.ClockRate(), SPS: clone(sps), PPS: clone(pps)}
		d := &h264Depacketizer{track: id, format: f, dec: dec, sps: t.SPS, pps: t.PPS}
		d.dts.Initialize()
		return t, d, nil
	case *format.VP8:
		dec, err := f.CreateDecoder()
		if err != nil {
			return media.Track{}, nil, fmt.Errorf("vp8 decoder: %w", err)
		}
		return media.Track{ID: id, Codec: media.CodecVP8, ClockRate: f.ClockRate()},
			&vp8Depacketizer{track: id, format: f, dec: dec}, nil
	case *format.MPEG4Audio:
		if f.Config == nil {
			return media.Track{}, nil, fmt.Errorf("%w: MPEG-4 audio without config", ErrUnsupportedCodec)
		}
		cfg, err := f.Config.Marshal()
		if err != nil {
			return media.Track{}, nil, fmt.Errorf("aac config: %w", err)
		}
		dec, err := f.CreateDecoder()
		if err != nil {
			return media.Track{}, nil, fmt.Errorf("aac decoder: %w", err)
		}
		return media.Track{ID: id, Codec: media.CodecAAC, ClockRate: f.ClockRate(), AudioConfig: cfg},
			&aacDepacketizer{track: id, format: f, dec: dec}, nil
	case *format.Opus:
		dec, err := f.CreateDecoder()
		if err != nil {
			return media.Track{}, nil, fmt.Errorf("opus decoder: %w", err)
		}
		ch := f.ChannelCount
		if ch == 0 {
			ch = 2
		}
		return media.Track{ID: id, Codec: media.CodecOpus, ClockRate: f.ClockRate(), ChannelCount: ch},
			&opusDepacketizer{track: id, format: f, dec: dec}, nil
	default:
		return media.Track{}, nil, fmt.Errorf("%w: %s", ErrUnsupportedCodec, f.Codec())
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

type h264Depacketizer struct {
	track    int
	format   *format.H264
	dec      *rtph264.Decoder
	dts      h264.DTSExtractor
	sps, pps []byte // latest parameter sets, from the SDP or in-band
	ready    bool   // a keyframe has been seen: DTS extraction can start
}

func (d *h264Depacketizer) Decode(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.AccessUnit, error) {
	nalus, err := d.dec.Decode(pkt)
	if err != nil {
		if errors.Is(err, rtph264.ErrMorePacketsNeeded) || errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) {
			return nil, nil
		}
		return nil, fmt.Errorf("h264 depacketize: %w", err)
	}
	nalus, invalid := validNALUs(nalus)
	if nalus == nil {
		return nil, invalid
	}
	key := h264.IsRandomAccess(nalus)
	inband := false
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			d.sps, inband = clone(n), true
		case h264.NALUTypePPS:
			d.pps = clone(n)
		}
	}
	if !d.ready && (!key || d.sps == nil || d.pps == nil) {
		return nil, nil // undecodable before the first IDR with known parameter sets
	}
	d.ready = true
	// The DTS extractor reads the SPS from the access unit and keeps a
	// reference to it, so it is always handed our own copy (cameras that
	// announce it only in the SDP have none in-band); the stored access
	// unit stays exactly as the camera sent it.
	forDTS := nalus
	if key || inband {
		forDTS = make([][]byte, 0, len(nalus)+2)
		forDTS = append(forDTS, d.sps, d.pps)
		for _, n := range nalus {
			if t := h264.NALUType(n[0] & 0x1f); t != h264.NALUTypeSPS && t != h264.NALUTypePPS {
				forDTS = append(forDTS, n)
			}
		}
	}
	dts, err := d.dts.Extract(forDTS, pts)
	if err != nil {
		return nil, fmt.Errorf("h264 timestamps: %w", err)
	}
	return newAU(d.track, pts, dts, key, nalus, now), invalid
}

// auBox is an access unit, the one-element list Decode returns it in, and
// room for the NAL unit slices of a usual picture (parameter sets, SEI,
// a slice), in one allocation: with the payload's own, two allocations
// per access unit on camvault's side of the read path instead of four.
type auBox struct {
	au    media.AccessUnit
	list  [1]*media.AccessUnit
	nalus [4][]byte
}

// newAU returns one access unit holding a copy of nalus.
func newAU(track int, pts, dts int64, key bool, nalus [][]byte, now time.Time) []*media.AccessUnit {
	b := &auBox{au: media.AccessUnit{Track: track, PTS: pts, DTS: dts, Key: key, Received: now}}
	dst := b.nalus[:0]
	if len(nalus) > len(b.nalus) {
		dst = make([][]byte, 0, len(nalus))
	}
	b.au.NALUs = copyNALUs(dst, nalus)
	b.list[0] = &b.au
	return b.list[:]
}

// Reset starts over at the next IDR. The parameter sets seen so far are
// kept: they still describe the stream.
func (d *h264Depacketizer) Reset() (err error) {
	d.dec, err = d.format.CreateDecoder()
	d.ready = false
	d.dts = h264.DTSExtractor{}
	d.dts.Initialize()
	return err
}

// validNALUs drops NAL units no encoder can have produced: the forbidden
// bit set, or a type that cannot appear in a depacketized access unit (0,
// and the RTP aggregation and fragmentation types 24-31). Such units are
// corruption on the way, not footage, and would break decoders of the
// frames after them.
func validNALUs(nalus [][]byte) ([][]byte, error) {
	bad := 0
	for _, n := range nalus {
		if !validNALU(n) {
			bad++
		}
	}
	if bad == 0 {
		return nalus, nil
	}
	out := make([][]byte, 0, len(nalus)-bad)
	for _, n := range nalus {
		if validNALU(n) {
			out = append(out, n)
		}
	}
	err := fmt.Errorf("h264: dropped %d invalid NAL unit(s)", bad)
	if len(out) == 0 {
		return nil, err
	}
	return out, err
}

func validNALU(n []byte) bool {
	return len(n) > 0 && n[0]&0x80 == 0 && n[0]&0x1f != 0 && n[0]&0x1f < 24
}

// copyNALUs copies an access unit's payload into one allocation, its
// slices appended to out: the transport reuses its packet buffers, and
// the segmenter keeps the unit until its segment is cut. (Pooling these
// was measured: no CPU gain, more RSS.)
func copyNALUs(out, nalus [][]byte) [][]byte {
	n := 0
	for _, b := range nalus {
		n += len(b)
	}
	buf := make([]byte, 0, n)
	for _, b := range nalus {
		start := len(buf)
		buf = append(buf, b...)
		out = append(out, buf[start:len(buf):len(buf)])
	}
	return out
}

type aacDepacketizer struct {
	track  int
	format *format.MPEG4Audio
	dec    *rtpmpeg4audio.Decoder
}

func (d *aacDepacketizer) Reset() (err error) {
	d.dec, err = d.format.CreateDecoder()
	return err
}

func (d *aacDepacketizer) Decode(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.AccessUnit, error) {
	aus, err := d.dec.Decode(pkt)
	if err != nil {
		if errors.Is(err, rtpmpeg4audio.ErrMorePacketsNeeded) {
			return nil, nil
		}
		return nil, fmt.Errorf("aac depacketize: %w", err)
	}
	out := make([]*media.AccessUnit, len(aus))
	for i, au := range aus {
		t := pts + int64(i)*aacSamplesPerFrame
		out[i] = &media.AccessUnit{Track: d.track, PTS: t, DTS: t, Key: true, NALUs: [][]byte{clone(au)}, Received: now}
	}
	return out, nil
}

type opusDepacketizer struct {
	track  int
	format *format.Opus
	dec    *rtpsimpleaudio.Decoder
}

// Reset has nothing to forget: every Opus packet is a whole frame.
func (d *opusDepacketizer) Reset() error { return nil }

func (d *opusDepacketizer) Decode(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.AccessUnit, error) {
	frame, err := d.dec.Decode(pkt)
	if err != nil {
		return nil, fmt.Errorf("opus depacketize: %w", err)
	}
	if len(frame) == 0 {
		return nil, nil
	}
	return newAU(d.track, pts, pts, true, [][]byte{frame}, now), nil
}

type vp8Depacketizer struct {
	track  int
	format *format.VP8
	dec    *rtpvp8.Decoder
	ready  bool // a keyframe has been seen
}

func (d *vp8Depacketizer) Decode(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.AccessUnit, error) {
	frame, err := d.dec.Decode(pkt)
	if err != nil {
		if errors.Is(err, rtpvp8.ErrMorePacketsNeeded) || errors.Is(err, rtpvp8.ErrNonStartingPacketAndNoPrevious) {
			return nil, nil
		}
		return nil, fmt.Errorf("vp8 depacketize: %w", err)
	}
	key, err := vp8Keyframe(frame)
	if err != nil {
		return nil, err
	}
	if !d.ready && !key {
		return nil, nil // inter frames before the first keyframe are undecodable
	}
	d.ready = true
	return newAU(d.track, pts, pts, key, [][]byte{frame}, now), nil
}

func (d *vp8Depacketizer) Reset() (err error) {
	d.dec, err = d.format.CreateDecoder()
	d.ready = false
	return err
}

// vp8Keyframe reads the VP8 frame tag (RFC 6386, 9.1): bit 0 clear marks a
// keyframe, which must carry the start code 9d 01 2a and a picture size.
func vp8Keyframe(frame []byte) (bool, error) {
	if len(frame) < 3 {
		return false, fmt.Errorf("vp8: frame of %d bytes", len(frame))
	}
	if frame[0]&1 != 0 {
		return false, nil
	}
	if len(frame) < 10 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return false, errors.New("vp8: keyframe without start code")
	}
	if frame[6]|frame[7]&0x3f == 0 || frame[8]|frame[9]&0x3f == 0 {
		return false, errors.New("vp8: keyframe with a zero picture size")
	}
	return true, nil
}
