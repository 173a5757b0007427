package main

import (
	"camvault/codec"
	"camvault/evidence"
)

// newRemuxer returns the export's MP4 remuxer (FFmpeg libraries, no re-encode).
func newRemuxer() evidence.Remuxer { return codec.Remuxer{} }
