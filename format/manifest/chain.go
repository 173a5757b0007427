package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Genesis is the prev of a chain's first record.
var Genesis = hex.EncodeToString(make([]byte, 32))

// HashLine returns the hex SHA-256 of a record line.
func HashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// Chain is the hash chain of the footage manifest and of the audit trail
// alike: each record is one line that names, in its prev field, the hash
// (HashLine) of the line before it, Genesis for the first. An auditor can
// recompute either with sha256sum, so the two must never drift apart: both
// are written and checked through this one type.
//
// The zero Chain is empty. A Chain is a value: the catalog resumes one
// from the head it stores, verifiers walk one over the stored lines.
type Chain struct {
	head string // hash of the last line; "" before the first
}

// ChainAt resumes a chain whose last line hashes to head; Genesis (or "")
// is the empty chain.
func ChainAt(head string) Chain {
	if head == Genesis {
		head = ""
	}
	return Chain{head: head}
}

// Head is the hash the next record must name as its prev: the last line's
// hash, Genesis while the chain is empty.
func (c Chain) Head() string {
	if c.head == "" {
		return Genesis
	}
	return c.head
}

// Link appends a record: encode must return the record's line with prev
// in its prev field. Link returns that line and its hash, which becomes
// the head.
func (c *Chain) Link(encode func(prev string) ([]byte, error)) (line []byte, hash string, err error) {
	line, err = encode(c.Head())
	if err != nil {
		return nil, "", fmt.Errorf("link chain record: %w", err)
	}
	hash = HashLine(line)
	c.head = hash
	return line, hash, nil
}

// Append links a manifest record: it sets r.Prev and returns r's line and
// hash.
func (c *Chain) Append(r *Record) (line []byte, hash string, err error) {
	r.Prev = c.Head()
	line, hash, err = r.Encode()
	if err != nil {
		return nil, "", err
	}
	c.head = hash
	return line, hash, nil
}

// Follow checks one stored line, whose prev field the caller parsed: ok
// says whether prev is the head. Either way the line's hash (returned)
// becomes the head, so the next line is checked against what is stored
// rather than against what should have been, and one broken link is
// reported once.
func (c *Chain) Follow(line []byte, prev string) (hash string, ok bool) {
	ok = prev == c.Head()
	c.head = HashLine(line)
	return c.head, ok
}
