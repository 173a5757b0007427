package main

import (
	"github.com/asticode/go-astiav"

	"camvault/codec"
	"camvault/evidence"
)

// newRemuxer returns the export's MP4 remuxer (FFmpeg libraries, no
// re-encode), with FFmpeg's own chatter limited to errors.
func newRemuxer() evidence.Remuxer {
	astiav.SetLogLevel(astiav.LogLevelError)
	return codec.Remuxer{}
}
