package webm

import "encoding/binary"

// VP8 frame header (RFC 6386, section 9.1): a 3-byte frame tag whose
// lowest bit is 0 on a keyframe; a keyframe continues with the start code
// and the 14-bit width and height, little endian, each with a 2-bit
// scaling code on top.
const (
	vp8KeyHeader    = 10
	vp8StartCode    = 0x2a019d // bytes 9d 01 2a, read little endian
	vp8MaxDimension = 1<<14 - 1
)

// VP8KeyframeSize reports whether frame is a VP8 keyframe and, if so, its
// picture size: a WebM session's video track has the size of its first
// keyframe. A frame whose tag says keyframe but whose start code is
// missing or whose size is zero is corrupt, and is not a keyframe.
func VP8KeyframeSize(frame []byte) (width, height int, ok bool) {
	if len(frame) < vp8KeyHeader || frame[0]&1 != 0 {
		return 0, 0, false
	}
	if uint32(frame[3])|uint32(frame[4])<<8|uint32(frame[5])<<16 != vp8StartCode {
		return 0, 0, false
	}
	width = int(binary.LittleEndian.Uint16(frame[6:]) & vp8MaxDimension)
	height = int(binary.LittleEndian.Uint16(frame[8:]) & vp8MaxDimension)
	if width == 0 || height == 0 {
		return 0, 0, false
	}
	return width, height, true
}
