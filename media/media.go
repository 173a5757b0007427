// Package media holds the plain data types that flow from ingest to the
// commit: tracks, access units, and the Item that carries one segment (or
// a gap, or a session's end) through the pipeline's stages. It depends on
// no protocol or codec library, so every stage can share it; its only
// camvault import is the chunk format an Item's header is written in.
package media

import "time"

// Codec names a track's codec as it appears in chunk headers and manifests.
type Codec string

// Codecs camvault accepts from cameras.
const (
	CodecH264 Codec = "h264"
	CodecAAC  Codec = "aac"
	CodecOpus Codec = "opus"
	CodecVP8  Codec = "vp8"
)

// Track describes one elementary stream of an ingest session.
type Track struct {
	// ID is the track's index in the session, starting from 0.
	ID int
	// Codec of the track.
	Codec Codec
	// ClockRate is the time base of PTS/DTS values, in Hz.
	ClockRate int
	// SPS and PPS (H.264 only), as first announced or seen in-band.
	SPS, PPS []byte
	// AudioConfig is the encoded MPEG-4 AudioSpecificConfig (AAC only).
	AudioConfig []byte
	// ChannelCount (Opus only).
	ChannelCount int
	// Width and Height of the picture (VP8 only, from the first keyframe:
	// a VP8 stream announces no parameters out of band).
	Width, Height int
}

// IsVideo reports whether the track carries video.
func (t Track) IsVideo() bool { return t.Codec == CodecH264 || t.Codec == CodecVP8 }

// AccessUnit is one decodable unit of a track: a whole H.264 picture
// (all its NAL units, without start codes or length prefixes) or one audio
// frame.
type AccessUnit struct {
	Track int
	// PTS and DTS in the track's clock rate, relative to the session start.
	PTS, DTS int64
	// Key is true for a random access point (IDR picture; every audio frame).
	Key bool
	// NALUs of an H.264 picture; for VP8 and audio, a single element
	// holding the frame.
	NALUs [][]byte
	// Received is the wall-clock time the last packet of the unit arrived,
	// used for ingest-to-durable latency.
	Received time.Time
}

// Size returns the payload size in bytes.
func (au *AccessUnit) Size() int {
	n := 0
	for _, b := range au.NALUs {
		n += len(b)
	}
	return n
}
