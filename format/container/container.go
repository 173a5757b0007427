// Package container holds what the session containers (fragmented MP4 in
// format/fmp4, WebM in format/webm and codec) have in common: their names
// as chunk headers carry them, the choice between them, and the interface
// through which the segmenter hands a container each segment's samples.
package container

import (
	"strings"

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

// Of returns the container named by a chunk header's codec field
// (fmp4:h264+aac gives fmp4).
func Of(codec string) string {
	c, _, _ := strings.Cut(codec, ":")
	return c
}

// Container writes a session's segments. It is created for the session's
// tracks, in order, and given every segment's samples in turn.
type Container interface {
	// Init returns the initialisation segment. The segmenter calls it once
	// and keeps the result.
	Init() ([]byte, error)
	// Marshal returns the media segment that carries exactly the given
	// samples: tracks[i] holds the samples of the session's i-th track in
	// decode order (possibly none). It is called once per segment, in
	// order, and must not keep tracks or the payloads past its return.
	// The result goes to the segmenter's caller, who may return it to
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
