package codec

// #cgo pkg-config: libavutil
// #include <libavutil/frame.h>
import "C"

import (
	"fmt"
	"unsafe"

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

// planes returns f's first n data planes as Go slices over FFmpeg's
// memory, each rows lines of its stride (go-astiav v0.16.0 only copies
// them out). They are valid while f holds its buffers.
func planes(f *astiav.Frame, n int, rows [3]int) (p [3][]byte, stride [3]int) {
	cf := (*C.AVFrame)(f.UnsafePointer())
	for i := 0; i < n && i < 3; i++ {
		stride[i] = int(cf.linesize[i])
		if cf.data[i] == nil || stride[i] <= 0 || rows[i] <= 0 {
			continue
		}
		p[i] = unsafe.Slice((*byte)(unsafe.Pointer(cf.data[i])), stride[i]*rows[i])
	}
	return p, stride
}
