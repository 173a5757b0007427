package webm

import (
	"bytes"
	"testing"
)

// vp8Frame is a fake VP8 frame whose header is real: a keyframe tag, start
// code and a 320x240 size, or an interframe tag.
func vp8Frame(key bool, size int) []byte {
	f := make([]byte, max(size, 14))
	if key {
		copy(f, []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00})
	} else {
		copy(f, []byte{0x31, 0x01, 0x00})
	}
	return f
}

func TestVP8KeyframeSize(t *testing.T) {
	key := vp8Frame(true, 20)
	if w, h, ok := VP8KeyframeSize(key); !ok || w != 320 || h != 240 {
		t.Fatalf("keyframe: %dx%d %v", w, h, ok)
	}
	scaled := bytes.Clone(key)
	scaled[7] |= 0xc0 // scaling codes are not part of the size
	scaled[9] |= 0x40
	if w, h, ok := VP8KeyframeSize(scaled); !ok || w != 320 || h != 240 {
		t.Fatalf("scaled keyframe: %dx%d %v", w, h, ok)
	}
	badCode := bytes.Clone(key)
	badCode[4] = 0x02
	zero := bytes.Clone(key)
	zero[6], zero[7] = 0, 0
	for name, f := range map[string][]byte{
		"nil": nil, "interframe": vp8Frame(false, 20), "truncated": key[:9],
		"bad start code": badCode, "zero width": zero, "tag only": key[:3],
	} {
		if w, h, ok := VP8KeyframeSize(f); ok {
			t.Errorf("%s: read as a %dx%d keyframe", name, w, h)
		}
	}
}
