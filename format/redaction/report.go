// Package redaction is the redaction report: the signed, machine-readable
// account that goes beside a redacted copy (docs/FORMAT.md). It says which
// sealed original chunks the copy was made from, the time range, every
// face track and manual edit with its decision and reason, who asked and
// who approved, and the hash of the file made. It is a format package so
// that a verifier checks it without the FFmpeg bindings that make the
// copy.
package redaction

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"camvault/format/manifest"
)

// Domain starts the message a report's signature covers, so that no
// signature over a checkpoint or an audit head passes for a report's.
const Domain = "camvault-redaction-report-v1"

// Version is the report format's version.
const Version = 1

// Decisions on a track or an edit.
const (
	DecisionBlur  = "blur"  // made unrecognisable
	DecisionKeep  = "keep"  // left as it is (the requester, or not a person)
	DecisionBlack = "black" // the whole picture blacked out
	DecisionMute  = "mute"  // the sound silenced
)

// Report is the redaction report. Times in the media are nanoseconds on
// the session's picture clock (0 is the session's first picture).
type Report struct {
	Version   int    `json:"version"`
	Incident  string `json:"incident"`
	Session   string `json:"session"`
	Reference string `json:"reference"` // the request's case number
	Reason    string `json:"reason"`
	// Chunks are the sealed original chunks the copy was made from (the
	// session's init segment included), as the manifest names them.
	Chunks []Chunk `json:"chunks"`
	FromNS int64   `json:"from_ns"`
	ToNS   int64   `json:"to_ns"`
	Tracks []Track `json:"tracks"`
	Edits  []Edit  `json:"edits"`
	// Output is the redacted MP4.
	Output      File      `json:"output"`
	RequestedBy string    `json:"requested_by"`
	RequestedAt time.Time `json:"requested_at"`
	ApprovedBy  string    `json:"approved_by"`
	ApprovedAt  time.Time `json:"approved_at"`
	RenderedAt  time.Time `json:"rendered_at"`
	Node        string    `json:"node,omitempty"` // the node whose key signs
	Signature   string    `json:"signature,omitempty"`
}

// Chunk names one sealed chunk by its manifest record.
type Chunk struct {
	Seq          uint64 `json:"seq"`
	Object       string `json:"object"`
	CipherSHA256 string `json:"cipher_sha256"`
	PlainSHA256  string `json:"plain_sha256"`
}

// Track is one detected face over time and what was decided about it.
type Track struct {
	ID       int    `json:"id"`
	Decision string `json:"decision"` // DecisionBlur or DecisionKeep
	Reason   string `json:"reason"`
	FirstNS  int64  `json:"first_ns"`
	LastNS   int64  `json:"last_ns"`
	Boxes    []Box  `json:"boxes"` // the detections, in time order
}

// Box is a rectangle at a time, in normalised picture coordinates
// (0,0 top left, 1,1 bottom right).
type Box struct {
	AtNS int64   `json:"at_ns"`
	X    float64 `json:"x"`
	Y    float64 `json:"y"`
	W    float64 `json:"w"`
	H    float64 `json:"h"`
}

// Edit is a manual edit: a moving box (Boxes holds its two key positions),
// a blackout or a mute, over [FromNS, ToNS).
type Edit struct {
	Kind     string `json:"kind"` // "box", "blackout", "mute"
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	FromNS   int64  `json:"from_ns"`
	ToNS     int64  `json:"to_ns"`
	Boxes    []Box  `json:"boxes,omitempty"`
}

// File is a file of the bundle by size and hash.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Encode returns the report's one canonical encoding: compact JSON in
// the field order above, times in UTC, ending in a newline. Verification accepts no
// other encoding, so a report cannot be changed without breaking it,
// even by a field a reader would ignore.
func (r *Report) Encode() ([]byte, error) {
	c := *r
	c.RequestedAt, c.ApprovedAt, c.RenderedAt = c.RequestedAt.UTC(), c.ApprovedAt.UTC(), c.RenderedAt.UTC()
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode redaction report: %w", err)
	}
	return append(b, '\n'), nil
}

// SignedBytes is the message the signature covers: the domain line, then
// the canonical encoding of the report without its signature.
func (r *Report) SignedBytes() ([]byte, error) {
	c := *r
	c.Signature = ""
	b, err := c.Encode()
	if err != nil {
		return nil, err
	}
	return append([]byte(Domain+"\n"), b...), nil
}

// Sign sets the signature with the node key.
func (r *Report) Sign(key ed25519.PrivateKey) error {
	msg, err := r.SignedBytes()
	if err != nil {
		return err
	}
	r.Signature = manifest.SignHead(key, msg)
	return nil
}

// ErrBadSignature is a report whose signature does not verify.
var ErrBadSignature = errors.New("redaction report signature does not verify")

// Verify checks the signature with the node's public key.
func (r *Report) Verify(pub ed25519.PublicKey) error {
	if r.Signature == "" {
		return fmt.Errorf("%w: unsigned", ErrBadSignature)
	}
	msg, err := r.SignedBytes()
	if err != nil {
		return err
	}
	if !manifest.VerifyHead(pub, msg, r.Signature) {
		return ErrBadSignature
	}
	return nil
}

// Parse reads a report file and requires it to be in the canonical
// encoding (Encode): unknown fields, another field order or other spacing
// are refused, so what verifies is exactly what was signed.
func Parse(data []byte) (*Report, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("redaction report: %w", err)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("redaction report: version %d (this camvault reads %d)", r.Version, Version)
	}
	again, err := r.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, data) {
		return nil, errors.New("redaction report: not in its canonical encoding (changed after it was written?)")
	}
	return &r, nil
}
