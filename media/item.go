package media

import (
	"time"

	"camvault/format/chunk"
)

// ItemKind says what an Item asks of the pipeline.
type ItemKind int

const (
	// ItemSegment is a segment to seal, store and commit as a chunk.
	ItemSegment ItemKind = iota
	// ItemGap is media that never reached the pipeline whole (lost in
	// transit, or derived work shed or failed): the commit stage records
	// a gap where its chunk would have been; nothing is stored.
	ItemGap
	// ItemEnd marks a session's end: the commit stage records it after
	// the session's last chunk and signs a checkpoint.
	ItemEnd
)

// Item is the one thing that travels through a session's pipeline, from
// the segmenter to the durable commit. Each stage fills in its part: a
// segment is plaintext (Plain) until the seal stage, a sealed chunk
// (Sealed) until the store stage, and an object key (Object) once stored.
// Items are keyed by session, so the commit stage sees each session's
// items in the order they were cut.
type Item struct {
	Kind ItemKind
	// Header names the incident, session, track, sequence, media time
	// range, deadline and codec; it becomes the chunk's header, or the
	// place of a gap record.
	Header chunk.Header
	// Key seals Plain; the ingest side holds only the session's key,
	// never one that opens an earlier session.
	Key *chunk.SessionKey

	// Plain is the segment's plaintext; the seal stage returns it to the
	// buffer pool and clears it.
	Plain []byte
	// Samples is how many access units the segment holds, VideoSamples
	// how many of them are video frames.
	Samples, VideoSamples int
	// First and Received are when the segment's first and last access
	// units reached the server: the start of the latency metrics.
	First, Received time.Time

	// Sealed is the chunk once sealed; the store stage releases its
	// buffer after the put.
	Sealed *chunk.Chunk
	// CipherSize is the sealed chunk's length, kept past its release.
	CipherSize int
	// Object is the chunk's key in the store once stored.
	Object string

	// Err is set by a stage that failed on the item; later stages pass
	// it on untouched and the commit stage records a gap in its place.
	Err error

	// Note says why a gap or an end happened.
	Note string
	// Shed marks a gap left by derived work shed under load.
	Shed bool
	// EndStatus is how the session ended (ItemEnd only).
	EndStatus string
}

// Size lets the pipeline count the bytes in flight.
func (it *Item) Size() int {
	if it.Sealed != nil {
		return it.CipherSize
	}
	return len(it.Plain)
}

// Pending reports whether a stage still has work to do on it: a segment
// no earlier stage failed on.
func (it *Item) Pending() bool { return it.Kind == ItemSegment && it.Err == nil }
