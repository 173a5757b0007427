// Package manifest is an incident's hash-chained record of everything that
// was stored for it: one record per chunk, session start and end, and gap
// (docs/FORMAT.md). Each record is one JSON line; its hash is the SHA-256 of
// that exact line, and each record names the previous record's hash, so an
// auditor can recompute the chain with any JSON parser and sha256sum. The
// audit trail is chained the same way, through the same Chain.
// Checkpoints sign the chain's head with the node's Ed25519 key, and are
// anchored in the chunk store under AnchorKey.
package manifest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Record kinds.
const (
	KindSession = "session" // an ingest session started (its wrapped key is in the catalog)
	KindChunk   = "chunk"   // a sealed chunk was stored
	KindGap     = "gap"     // something expected is missing: reconnect, crash, lost segment
	KindEnd     = "end"     // an ingest session ended
)

// Record is one manifest entry.
type Record struct {
	Index        uint64    `json:"index"`
	Incident     string    `json:"incident"`
	Kind         string    `json:"kind"`
	Session      string    `json:"session,omitempty"`
	Track        string    `json:"track,omitempty"`
	Seq          uint64    `json:"seq"`
	StartNS      int64     `json:"start_ns"`
	EndNS        int64     `json:"end_ns"`
	Wall         time.Time `json:"wall"`
	PlainSize    int64     `json:"plain_size,omitempty"`
	CipherSize   int64     `json:"cipher_size,omitempty"`
	Samples      int64     `json:"samples,omitempty"` // access units (frames) in the chunk, all tracks
	PlainSHA256  string    `json:"plain_sha256,omitempty"`
	CipherSHA256 string    `json:"cipher_sha256,omitempty"`
	Object       string    `json:"object,omitempty"`
	// The range a gap covers, in the gaps written since camvault records
	// it (older gaps have none of these): FromWall and ToWall, its
	// wall-clock range; for crash and reconnect gaps FromSession, FromSeq
	// and FromNS name the last durable chunk of the original track before
	// the hole and its media end, FromWall being its wall-clock end, and
	// ToWall is the camera's return, or for a crash the restart. FromSeq
	// and FromNS are absent when no media chunk of FromSession was durable
	// (FromWall is then its start).
	FromSession string     `json:"from_session,omitempty"`
	FromSeq     uint64     `json:"from_seq,omitempty"`
	FromNS      int64      `json:"from_ns,omitempty"`
	FromWall    *time.Time `json:"from_wall,omitempty"`
	ToWall      *time.Time `json:"to_wall,omitempty"`
	Note        string     `json:"note,omitempty"`
	Prev        string     `json:"prev"`
}

// Encode returns the record's line (without newline) and its hash.
func (r *Record) Encode() ([]byte, string, error) {
	line, err := json.Marshal(r)
	if err != nil {
		return nil, "", fmt.Errorf("encode manifest record %d: %w", r.Index, err)
	}
	return line, HashLine(line), nil
}

// ChainError says where a manifest stops being trustworthy.
type ChainError struct {
	Index  uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("manifest record %d: %s", e.Index, e.Reason)
}

// VerifyChain parses lines and checks the hash chain of one incident. It
// returns the records and the head hash.
func VerifyChain(incident string, lines [][]byte) ([]Record, string, error) {
	var chain Chain
	recs := make([]Record, 0, len(lines))
	for i, line := range lines {
		var r Record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return recs, chain.Head(), &ChainError{uint64(i), "unparsable: " + err.Error()}
		}
		switch {
		case r.Index != uint64(i):
			return recs, chain.Head(), &ChainError{uint64(i), fmt.Sprintf("index %d out of place", r.Index)}
		case r.Incident != incident:
			return recs, chain.Head(), &ChainError{uint64(i), fmt.Sprintf("belongs to incident %q", r.Incident)}
		}
		prev := chain.Head()
		if _, ok := chain.Follow(line, r.Prev); !ok {
			return recs, prev, &ChainError{uint64(i), "hash chain broken (prev does not match the previous record)"}
		}
		recs = append(recs, r)
	}
	return recs, chain.Head(), nil
}

// Checkpoint commits to the chain's head at Index.
type Checkpoint struct {
	Incident string `json:"incident"`
	// Node is the id of the node that signed it, whose key verifies it;
	// absent in checkpoints written before nodes had ids (one node's key
	// verifies those). It is not under the signature: a checkpoint that
	// names another node is checked against that node's key and fails.
	Node      string    `json:"node,omitempty"`
	Index     uint64    `json:"index"` // index of the last record covered
	Head      string    `json:"head"`  // hash of that record
	Time      time.Time `json:"time"`
	Signature string    `json:"signature,omitempty"` // base64 Ed25519 over SignedBytes
}

// SignedBytes is the message a checkpoint signature covers.
func (c *Checkpoint) SignedBytes() []byte {
	return HeadMessage(CheckpointDomain, c.Index, c.Head, c.Time, c.Incident)
}

// Sign sets the checkpoint's signature.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.Signature = SignHead(key, c.SignedBytes())
}

// ErrBadSignature is returned when a checkpoint's signature does not verify.
var ErrBadSignature = errors.New("checkpoint signature does not verify")

// Verify checks the checkpoint's signature.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) error {
	if !VerifyHead(pub, c.SignedBytes(), c.Signature) {
		return fmt.Errorf("checkpoint at record %d: %w", c.Index, ErrBadSignature)
	}
	return nil
}
