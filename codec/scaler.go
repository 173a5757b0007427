package codec

import (
	"errors"
	"fmt"

	"github.com/asticode/go-astiav"
)

// scaleFlags: bicubic is what the ffmpeg CLI's scale filter uses, so a
// proxy looks like the one the CLI would make.
const scaleFlags = astiav.SoftwareScaleContextFlagBicubic

// Scaler converts pictures to one size and pixel format (swscale). It
// follows the source: a picture of another size or format than the
// previous one gets a new context, so a camera that changes resolution
// mid-stream still scales. Not safe for concurrent use; Close frees it.
type Scaler struct {
	width, height int
	format        astiav.PixelFormat

	ssc        *astiav.SoftwareScaleContext
	srcW, srcH int
	srcFormat  astiav.PixelFormat
	dst        *astiav.Frame
}

// NewScaler returns a scaler to width×height in the given pixel format.
func NewScaler(width, height int, format astiav.PixelFormat) (*Scaler, error) {
	if width < 1 || height < 1 {
		return nil, fmt.Errorf("scaler: size %dx%d", width, height)
	}
	dst := astiav.AllocFrame()
	if dst == nil {
		return nil, errors.New("scaler: cannot allocate a frame")
	}
	return &Scaler{width: width, height: height, format: format, dst: dst}, nil
}

// Scale returns src scaled, with src's timestamp. The frame belongs to
// the scaler and stays valid until the next Scale or Close. Pictures are
// written into the same buffer while no one else holds a reference to
// it; a consumer that kept one to the previous picture (an encoder's
// lookahead) still sees that picture whole.
func (s *Scaler) Scale(src *astiav.Frame) (*astiav.Frame, error) {
	if src.Width() < 1 || src.Height() < 1 {
		return nil, fmt.Errorf("scaler: source picture %dx%d", src.Width(), src.Height())
	}
	if s.ssc == nil || src.Width() != s.srcW || src.Height() != s.srcH || src.PixelFormat() != s.srcFormat {
		if s.ssc != nil {
			s.ssc.Free()
			s.ssc = nil
		}
		ssc, err := astiav.CreateSoftwareScaleContext(src.Width(), src.Height(), src.PixelFormat(), s.width, s.height, s.format, astiav.NewSoftwareScaleContextFlags(scaleFlags))
		if err != nil {
			return nil, fmt.Errorf("scaler: %dx%d %s to %dx%d %s: %w", src.Width(), src.Height(), src.PixelFormat(), s.width, s.height, s.format, err)
		}
		s.ssc, s.srcW, s.srcH, s.srcFormat = ssc, src.Width(), src.Height(), src.PixelFormat()
	}
	if s.dst.Width() == 0 {
		s.dst.SetWidth(s.width)
		s.dst.SetHeight(s.height)
		s.dst.SetPixelFormat(s.format)
		if err := s.dst.AllocBuffer(0); err != nil {
			return nil, fmt.Errorf("scaler: picture buffer: %w", err)
		}
	} else if err := makeWritable(s.dst); err != nil {
		return nil, fmt.Errorf("scaler: %w", err)
	}
	if err := s.ssc.ScaleFrame(src, s.dst); err != nil {
		return nil, fmt.Errorf("scaler: %w", err)
	}
	s.dst.SetPts(src.Pts())
	return s.dst, nil
}

// Close frees the scaler; it is safe to call more than once.
func (s *Scaler) Close() {
	if s.ssc != nil {
		s.ssc.Free()
		s.ssc = nil
	}
	if s.dst != nil {
		s.dst.Free()
		s.dst = nil
	}
}
