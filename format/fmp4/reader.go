package fmp4

import (
	"bytes"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"

	"camvault/media"
)

// TrackCodecs returns the codec of each track of an init segment, in the
// order of its sample entries (the order Samples returns), as FFmpeg names
// them: h264, aac, opus, vp9, hevc, else the Go type of the entry.
func TrackCodecs(init []byte) ([]string, error) {
	var in fmp4.Init
	if err := in.Unmarshal(bytes.NewReader(init)); err != nil {
		return nil, fmt.Errorf("parse init: %w", err)
	}
	var out []string
	for _, t := range in.Tracks {
		switch t.Codec.(type) {
		case *mp4.CodecH264:
			out = append(out, string(media.CodecH264))
		case *mp4.CodecMPEG4Audio:
			out = append(out, string(media.CodecAAC))
		case *mp4.CodecOpus:
			out = append(out, string(media.CodecOpus))
		case *mp4.CodecVP9:
			out = append(out, "vp9")
		case *mp4.CodecH265:
			out = append(out, "hevc")
		default:
			out = append(out, fmt.Sprintf("%T", t.Codec))
		}
	}
	return out, nil
}

// Samples returns each track's sample payloads, in order, from an init
// segment and the media segments that follow it, tracks in the order of
// the init segment's entries.
func Samples(init, segments []byte) ([][][]byte, error) {
	var parts fmp4.Parts
	if err := parts.Unmarshal(segments); err != nil {
		return nil, fmt.Errorf("parse segments: %w", err)
	}
	var in fmp4.Init
	if err := in.Unmarshal(bytes.NewReader(init)); err != nil {
		return nil, fmt.Errorf("parse init: %w", err)
	}
	index := map[int]int{}
	out := make([][][]byte, len(in.Tracks))
	for i, t := range in.Tracks {
		index[t.ID] = i
	}
	for _, p := range parts {
		for _, t := range p.Tracks {
			i, ok := index[t.ID]
			if !ok {
				return nil, fmt.Errorf("segment names unknown track %d", t.ID)
			}
			for _, s := range t.Samples {
				out[i] = append(out[i], s.Payload)
			}
		}
	}
	return out, nil
}
