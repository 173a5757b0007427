package codec

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/asticode/go-astiav"
)

// AudioFramer resamples decoded audio and cuts it into frames of a fixed
// number of samples, as an encoder such as AAC needs (1024 per frame,
// where Opus gives 960). go-astiav v0.16.0 has no swresample binding, so
// it is a filter graph: abuffer → aresample → aformat → asetnsamples →
// abuffersink. aresample keeps the audio on its timestamps: a hole in the
// input (packets lost in transit) becomes silence rather than pulling
// the rest of the track early. Not safe for concurrent use; Close frees
// it.
type AudioFramer struct {
	graph *astiav.FilterGraph
	src   *astiav.FilterContext
	sink  *astiav.FilterContext
	frame *astiav.Frame
	inTB  astiav.Rational
}

// AudioFormat describes the audio going into an AudioFramer.
type AudioFormat struct {
	SampleRate   int
	SampleFormat astiav.SampleFormat
	Layout       astiav.ChannelLayout
	// TimeBase of the frames' timestamps.
	TimeBase astiav.Rational
}

// NewAudioFramer returns a framer from in to outRate Hz in outFormat with
// outLayout's channels, frameSize samples per frame (the last may be
// shorter), timestamps in 1/outRate.
func NewAudioFramer(in AudioFormat, outRate int, outFormat astiav.SampleFormat, outLayout astiav.ChannelLayout, frameSize int) (_ *AudioFramer, err error) {
	if in.SampleRate <= 0 || outRate <= 0 || frameSize <= 0 || in.Layout.NbChannels() < 1 || outLayout.NbChannels() < 1 {
		return nil, fmt.Errorf("audio framer: %d Hz, %d channels to %d Hz in frames of %d", in.SampleRate, in.Layout.NbChannels(), outRate, frameSize)
	}
	a := &AudioFramer{inTB: in.TimeBase}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.graph = astiav.AllocFilterGraph(); a.graph == nil {
		return nil, errors.New("audio framer: cannot allocate a filter graph")
	}
	a.graph.SetThreadCount(1)
	abuffer, abuffersink := astiav.FindFilterByName("abuffer"), astiav.FindFilterByName("abuffersink")
	if abuffer == nil || abuffersink == nil {
		return nil, errors.New("audio framer: FFmpeg lacks abuffer or abuffersink")
	}
	if a.src, err = a.graph.NewFilterContext(abuffer, "in", astiav.FilterArgs{
		"time_base":      in.TimeBase.String(),
		"sample_rate":    strconv.Itoa(in.SampleRate),
		"sample_fmt":     in.SampleFormat.Name(),
		"channel_layout": in.Layout.String(),
	}); err != nil {
		return nil, fmt.Errorf("audio framer: source: %w", err)
	}
	if a.sink, err = a.graph.NewFilterContext(abuffersink, "out", nil); err != nil {
		return nil, fmt.Errorf("audio framer: sink: %w", err)
	}
	outputs, inputs := astiav.AllocFilterInOut(), astiav.AllocFilterInOut()
	defer outputs.Free()
	defer inputs.Free()
	outputs.SetName("in")
	outputs.SetFilterContext(a.src)
	outputs.SetPadIdx(0)
	outputs.SetNext(nil)
	inputs.SetName("out")
	inputs.SetFilterContext(a.sink)
	inputs.SetPadIdx(0)
	inputs.SetNext(nil)
	desc := fmt.Sprintf("aresample=%d:async=1:min_hard_comp=0.1,aformat=sample_fmts=%s:channel_layouts=%s,asetnsamples=n=%d:p=0",
		outRate, outFormat.Name(), outLayout.String(), frameSize)
	if err := a.graph.Parse(desc, inputs, outputs); err != nil {
		return nil, fmt.Errorf("audio framer: parse %q: %w", desc, err)
	}
	if err := a.graph.Configure(); err != nil {
		return nil, fmt.Errorf("audio framer: configure: %w", err)
	}
	if a.frame = astiav.AllocFrame(); a.frame == nil {
		return nil, errors.New("audio framer: cannot allocate a frame")
	}
	return a, nil
}

// Push adds decoded audio (nil at the end of the input, to drain the
// graph) and calls emit for every frame ready, timestamps in 1/outRate.
// The frame belongs to the framer and is valid only during emit.
func (a *AudioFramer) Push(f *astiav.Frame, emit func(*astiav.Frame) error) error {
	if err := a.src.BuffersrcAddFrame(f, astiav.NewBuffersrcFlags(astiav.BuffersrcFlagKeepRef)); err != nil {
		return fmt.Errorf("audio framer: add frame: %w", err)
	}
	for {
		err := a.sink.BuffersinkGetFrame(a.frame, astiav.NewBuffersinkFlags())
		if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audio framer: get frame: %w", err)
		}
		err = emit(a.frame)
		a.frame.Unref()
		if err != nil {
			return err
		}
	}
}

// Close frees the framer; it is safe to call more than once.
func (a *AudioFramer) Close() {
	if a.frame != nil {
		a.frame.Free()
		a.frame = nil
	}
	if a.graph != nil {
		a.graph.Free() // frees the filter contexts with it
		a.graph = nil
	}
}
