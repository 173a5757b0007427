package codec

// #cgo pkg-config: libavutil
// #include <libavutil/frame.h>
import "C"

import (
	"fmt"

	"github.com/asticode/go-astiav"
)

// makeWritable makes f's buffers its own, copying them only when another
// reference shares them (av_frame_make_writable, which go-astiav v0.16.0
// does not bind). It lets a Scaler write every picture into the same
// buffer, as FFmpeg's own buffer pools do, rather than allocating and
// faulting in a fresh one per picture, while a consumer that kept a
// reference to the previous picture still sees it whole.
func makeWritable(f *astiav.Frame) error {
	if ret := C.av_frame_make_writable((*C.AVFrame)(f.UnsafePointer())); ret < 0 {
		return fmt.Errorf("make frame writable: error %d", int(ret))
	}
	return nil
}
