package codec

import (
	"errors"
	"fmt"

	"github.com/asticode/go-astiav"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// PatternConfig describes a synthetic camera stream.
type PatternConfig struct {
	Width, Height int
	FPS           int
	Frames        int
	Bitrate       int // bits per second, capped like a camera's uplink
	GOP           int // keyframe interval in frames
}

// EncodePattern encodes a moving test picture with noise (FFmpeg's
// testsrc2, which compresses about as badly as real footage) with libx264,
// entirely in the FFmpeg libraries: the simulated cameras' video, with no
// file read or written. It returns the access units in order, each a list
// of NAL units without start codes; every IDR carries the SPS and PPS in
// band, as cameras send them.
func EncodePattern(cfg PatternConfig) ([][][]byte, error) {
	if cfg.FPS <= 0 || cfg.Frames <= 0 {
		return nil, fmt.Errorf("pattern: %d frames at %d fps", cfg.Frames, cfg.FPS)
	}
	graph := astiav.AllocFilterGraph()
	if graph == nil {
		return nil, errors.New("pattern: cannot allocate a filter graph")
	}
	defer graph.Free()
	sinkFilter := astiav.FindFilterByName("buffersink")
	if sinkFilter == nil {
		return nil, errors.New("pattern: FFmpeg lacks buffersink")
	}
	sink, err := graph.NewFilterContext(sinkFilter, "out", nil)
	if err != nil {
		return nil, fmt.Errorf("pattern: sink: %w", err)
	}
	inputs := astiav.AllocFilterInOut()
	defer inputs.Free()
	inputs.SetName("out")
	inputs.SetFilterContext(sink)
	inputs.SetPadIdx(0)
	inputs.SetNext(nil)
	desc := fmt.Sprintf("testsrc2=size=%dx%d:rate=%d,noise=alls=30:allf=t,format=yuv420p", cfg.Width, cfg.Height, cfg.FPS)
	if err := graph.Parse(desc, inputs, nil); err != nil {
		return nil, fmt.Errorf("pattern: parse %q: %w", desc, err)
	}
	if err := graph.Configure(); err != nil {
		return nil, fmt.Errorf("pattern: configure: %w", err)
	}
	enc, err := NewH264Encoder(H264Config{Width: cfg.Width, Height: cfg.Height,
		TimeBase: astiav.NewRational(1, cfg.FPS), FrameRate: astiav.NewRational(cfg.FPS, 1),
		Bitrate: cfg.Bitrate, CapRate: true, GOP: cfg.GOP, Preset: "ultrafast"})
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	var params h264.AnnexB
	if err := params.Unmarshal(enc.ExtraData()); err != nil {
		return nil, fmt.Errorf("pattern: parameter sets: %w", err)
	}

	var aus [][][]byte
	collect := func(pkt *astiav.Packet) error {
		var nalus h264.AnnexB
		if err := nalus.Unmarshal(pkt.Data()); err != nil {
			return fmt.Errorf("pattern: packet: %w", err)
		}
		var au [][]byte
		if h264.IsRandomAccess(nalus) {
			au = append(au, params...)
		}
		for _, n := range nalus {
			// Parameter sets come from the global header; access unit
			// delimiters and SEI are of no use to the simulation.
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS, h264.NALUTypePPS, h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeSEI:
				continue
			}
			au = append(au, append([]byte(nil), n...))
		}
		aus = append(aus, au)
		return nil
	}
	frame := astiav.AllocFrame()
	if frame == nil {
		return nil, errors.New("pattern: cannot allocate a frame")
	}
	defer frame.Free()
	for i := 0; i < cfg.Frames; i++ {
		if err := sink.BuffersinkGetFrame(frame, astiav.NewBuffersinkFlags()); err != nil {
			return nil, fmt.Errorf("pattern: frame %d: %w", i, err)
		}
		frame.SetPts(int64(i))
		// testsrc2 marks every picture as a keyframe, which libx264
		// would obey: leave the choice to the encoder's GOP.
		frame.SetPictureType(astiav.PictureTypeNone)
		frame.SetKeyFrame(false)
		err := enc.Encode(frame, collect)
		frame.Unref()
		if err != nil {
			return nil, err
		}
	}
	if err := enc.Encode(nil, collect); err != nil {
		return nil, err
	}
	if len(aus) != cfg.Frames {
		return nil, fmt.Errorf("pattern: %d pictures encoded of %d", len(aus), cfg.Frames)
	}
	return aus, nil
}
