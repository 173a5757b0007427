package codec

import (
	"errors"
	"fmt"

	"github.com/asticode/go-astiav"
)

// ErrDecode marks input the decoder rejected: a corrupt or truncated
// frame. Callers tell it apart from a failure of camvault or FFmpeg
// itself (errors.Is), because a corrupt frame is a fact about the
// camera's bitstream, recorded as a gap in the derived work, not a fault.
var ErrDecode = errors.New("decode error")

// Decoder decodes one stream's packets into frames. It is not safe for
// concurrent use; Close frees it.
type Decoder struct {
	cc    *astiav.CodecContext
	frame *astiav.Frame
}

// NewDecoder opens a decoder for a stream's codec parameters. threads is
// the decoder's thread count, 0 letting FFmpeg choose from the cores.
//
// A strict decoder fails on every error it detects. FFmpeg's decoders
// conceal damage by default (a truncated slice becomes grey macroblocks),
// and a review proxy built on concealed pictures would hide that the
// original is damaged, so the proxy decodes strictly and records a gap.
// An export decodes leniently: the police get every picture the camera
// sent, concealed where it must be, rather than no file.
func NewDecoder(par *astiav.CodecParameters, threads int, strict bool) (_ *Decoder, err error) {
	c := astiav.FindDecoder(par.CodecID())
	if c == nil {
		return nil, fmt.Errorf("no decoder for %s", par.CodecID())
	}
	d := &Decoder{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.cc = astiav.AllocCodecContext(c); d.cc == nil {
		return nil, errors.New("cannot allocate a decoder context")
	}
	if err := par.ToCodecContext(d.cc); err != nil {
		return nil, fmt.Errorf("decoder parameters: %w", err)
	}
	d.cc.SetThreadCount(threads)
	opts := astiav.NewDictionary()
	defer opts.Free()
	if strict {
		// explode: stop at the first bitstream error rather than conceal it.
		if err := opts.Set("err_detect", "explode", 0); err != nil {
			return nil, fmt.Errorf("decoder options: %w", err)
		}
	}
	if err := d.cc.Open(c, opts); err != nil {
		return nil, fmt.Errorf("open %s decoder: %w", c.Name(), err)
	}
	if d.frame = astiav.AllocFrame(); d.frame == nil {
		return nil, errors.New("cannot allocate a frame")
	}
	return d, nil
}

// Decode sends one packet (nil flushes the decoder at the end of the
// input) and calls emit for every frame the decoder then returns. The
// frame belongs to the decoder and is valid only during emit. A packet
// the decoder rejects gives an error wrapping ErrDecode; an error from
// emit is returned as it is.
func (d *Decoder) Decode(pkt *astiav.Packet, emit func(*astiav.Frame) error) error {
	if err := d.cc.SendPacket(pkt); err != nil && !errors.Is(err, astiav.ErrEof) {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	for {
		err := d.cc.ReceiveFrame(d.frame)
		if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrDecode, err)
		}
		err = emit(d.frame)
		d.frame.Unref()
		if err != nil {
			return err
		}
	}
}

// Close frees the decoder; it is safe to call more than once.
func (d *Decoder) Close() {
	if d.frame != nil {
		d.frame.Free()
		d.frame = nil
	}
	if d.cc != nil {
		d.cc.Free()
		d.cc = nil
	}
}
