package main

import (
	"github.com/asticode/go-astiav"

	"camvault/codec"
	"camvault/evidence"
)

// newExporter returns the export's media writer (FFmpeg libraries): an
// H.264/AAC MP4 per session, the camera's H.264 and AAC copied, VP8 and
// Opus transcoded; FFmpeg's own chatter limited to errors.
func newExporter() evidence.MediaExporter {
	astiav.SetLogLevel(astiav.LogLevelError)
	return codec.Exporter{}
}

// readMedia reads an export's media file for evidence.VerifyMedia.
func readMedia(path string) ([]evidence.MediaStream, error) {
	streams, err := codec.ReadStreams(path)
	if err != nil {
		return nil, err
	}
	out := make([]evidence.MediaStream, len(streams))
	for i, s := range streams {
		out[i] = evidence.MediaStream{Codec: s.Codec, Packets: s.Packets, Start: s.Start, End: s.End}
	}
	return out, nil
}
