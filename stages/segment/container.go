package segment

import (
	"encoding/binary"

	"camvault/media"
)

// Container formats, as chunk headers name them (the part of the codec
// string before the colon).
const (
	FormatFMP4 = "fmp4"
	FormatWebM = "webm"
)

// FormatFor returns the container a session with these tracks is recorded
// in: WebM when its video is VP8, because no MP4 muxer camvault has
// (mediacommon, FFmpeg 5.1) writes VP8; fragmented MP4 otherwise.
func FormatFor(tracks []media.Track) string {
	for _, t := range tracks {
		if t.Codec == media.CodecVP8 {
			return FormatWebM
		}
	}
	return FormatFMP4
}

// Container writes a session's segments in a format other than the
// built-in fragmented MP4 (Config.Container). It is created for the same
// tracks, in the same order, as the Segmenter it is given to.
type Container interface {
	// Init returns the initialisation segment. New calls it once and
	// keeps the result.
	Init() ([]byte, error)
	// Marshal returns the media segment that carries exactly the given
	// samples: tracks[i] holds the samples of the session's i-th track in
	// decode order (possibly none). It is called once per segment, in
	// order, and must not keep tracks or the payloads past its return.
	// The Segmenter hands the result to its caller, who may return it to
	// camvault/internal/bufpool.
	Marshal(seq uint64, tracks [][]Sample) ([]byte, error)
}

// Sample is one access unit as a Container receives it.
type Sample struct {
	// DTS on the session's output timeline (0 at the first kept
	// keyframe), in the track's clock ticks.
	DTS int64
	// PTSOffset is PTS−DTS in ticks.
	PTSOffset int32
	// Duration in ticks. A track's last sample before a segment end that
	// has no successor yet gets the track's previous duration.
	Duration uint32
	// Key marks a random access point (every audio frame).
	Key bool
	// Data is the unit's payload: one element for VP8 and audio, the NAL
	// units of an H.264 picture.
	Data [][]byte
}

// VP8 frame header (RFC 6386, section 9.1): a 3-byte frame tag whose
// lowest bit is 0 on a keyframe; a keyframe continues with the start code
// and the 14-bit width and height, little endian, each with a 2-bit
// scaling code on top.
const (
	vp8TagSize      = 3
	vp8KeyHeader    = 10
	vp8StartCode    = 0x2a019d // bytes 9d 01 2a, read little endian
	vp8MaxDimension = 1<<14 - 1
)

// VP8KeyframeSize reports whether frame is a VP8 keyframe and, if so, its
// picture size. A frame whose tag says keyframe but whose start code is
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
	_, _, key = VP8KeyframeSize(f)
	return key, key
}
