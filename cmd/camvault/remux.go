package main

import (
	"github.com/asticode/go-astiav"

	"camvault/codec"
	"camvault/evidence"
)

// newRemuxer returns the export's remuxer (FFmpeg libraries, no
// re-encode: MP4 for H.264 sessions, WebM for VP8 ones), with FFmpeg's own
// chatter limited to errors.
func newRemuxer() evidence.Remuxer {
	astiav.SetLogLevel(astiav.LogLevelError)
	return codec.Remuxer{}
}
