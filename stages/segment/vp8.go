package segment

import "camvault/format/webm"

// vp8TagSize is the size of a VP8 frame tag (RFC 6386, section 9.1).
const vp8TagSize = 3

// vp8Frame classifies a VP8 access unit: whether it is usable at all
// (one non-empty frame with a complete tag, and a complete keyframe
// header when the tag says keyframe) and whether it is a keyframe.
func vp8Frame(nalus [][]byte) (usable, key bool) {
	if len(nalus) != 1 || len(nalus[0]) < vp8TagSize {
		return false, false
	}
	f := nalus[0]
	if f[0]&1 != 0 {
		return true, false
	}
	_, _, key = webm.VP8KeyframeSize(f)
	return key, key
}
