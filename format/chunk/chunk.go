// Package chunk is the sealed chunk format: it turns plaintext segments
// into sealed chunks and back, and names where each chunk is stored.
//
// A chunk is (docs/FORMAT.md has the full specification):
//
//	magic "CAMVCHNK" (8 bytes) | version (1 byte, = 1) | header length (uint32, big endian)
//	| header (JSON, at most 4096 bytes) | AES-256-GCM ciphertext with its 16-byte tag
//
// Everything before the ciphertext is the AEAD's associated data, so the
// incident, session, track, sequence, time range and deadline cannot be
// changed, nor a chunk moved to another place in the incident, without the
// tag failing. The nonce is derived from (track, sequence), which are unique
// within a session, and a session has its own key: a nonce is never reused
// under one key.
package chunk

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"

	"camvault/internal/bufpool"
)

// Format constants.
const (
	Magic         = "CAMVCHNK"
	Version       = 1
	AlgAES256GCM  = "AES-256-GCM"
	KeySize       = 32
	MaxHeaderSize = 4096
	prefixSize    = len(Magic) + 1 + 4
)

// Tracks of an incident; their numbers enter the nonce.
const (
	TrackOriginal = "original"
	TrackProxy    = "proxy"
	TrackThumb    = "thumb"
)

var trackNumbers = map[string]uint32{TrackOriginal: 0, TrackProxy: 1, TrackThumb: 2}

// Errors callers branch on.
var (
	ErrMalformed = errors.New("malformed chunk")
	ErrAuth      = errors.New("chunk authentication failed")
)

// Header is the chunk's cleartext, authenticated header.
type Header struct {
	Incident    string    `json:"incident"`
	Session     string    `json:"session"`
	Track       string    `json:"track"`
	Seq         uint64    `json:"seq"` // 0 is the session's fMP4 init segment
	StartNS     int64     `json:"start_ns"`
	EndNS       int64     `json:"end_ns"`
	Wall        time.Time `json:"wall"`
	RetainUntil time.Time `json:"retain_until"`
	Codec       string    `json:"codec"`
	Alg         string    `json:"alg"`
}

// Nonce returns the 96-bit GCM nonce of the header's (track, seq).
func (h *Header) Nonce() ([]byte, error) {
	n, ok := trackNumbers[h.Track]
	if !ok {
		return nil, fmt.Errorf("%w: unknown track %q", ErrMalformed, h.Track)
	}
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint32(nonce[:4], n)
	binary.BigEndian.PutUint64(nonce[4:], h.Seq)
	return nonce, nil
}

// Chunk is a sealed segment with the digests the manifest records.
type Chunk struct {
	Header       Header
	Bytes        []byte
	PlainSHA256  [32]byte
	CipherSHA256 [32]byte
	PlainSize    int
}

// Release returns the chunk's buffer for reuse; c.Bytes must not be used
// afterwards.
func (c *Chunk) Release() {
	bufpool.Put(c.Bytes)
	c.Bytes = nil
}

// SessionKey is one ingest session's data key. The ingest side creates it,
// wraps it to the recipients and forgets nothing but the AEAD: it can seal,
// it can never unwrap an earlier session's key.
type SessionKey struct {
	aead    cipher.AEAD
	wrapped []byte
}

// NewSessionKey draws a fresh data key and wraps it with age to recipients.
func NewSessionKey(recipients []age.Recipient) (*SessionKey, error) {
	if len(recipients) == 0 {
		return nil, errors.New("new session key: no recipients")
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("new session key: %w", err)
	}
	defer clear(key)
	var wrapped bytes.Buffer
	w, err := age.Encrypt(&wrapped, recipients...)
	if err != nil {
		return nil, fmt.Errorf("wrap session key: %w", err)
	}
	if _, err := w.Write(key); err != nil {
		return nil, fmt.Errorf("wrap session key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("wrap session key: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &SessionKey{aead: aead, wrapped: wrapped.Bytes()}, nil
}

// Wrapped returns the age-encrypted data key, stored in the catalog.
func (k *SessionKey) Wrapped() []byte { return k.wrapped }

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// Seal encrypts plaintext under h. h.Alg is set by Seal.
func (k *SessionKey) Seal(h Header, plaintext []byte) (*Chunk, error) {
	h.Alg = AlgAES256GCM
	nonce, err := h.Nonce()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("seal chunk %d: %w", h.Seq, err)
	}
	if len(hdr) > MaxHeaderSize {
		return nil, fmt.Errorf("seal chunk %d: header of %d bytes exceeds %d", h.Seq, len(hdr), MaxHeaderSize)
	}
	// Pooled: the chunk's Bytes go back with Release once stored.
	out := bufpool.Get(prefixSize + len(hdr) + len(plaintext) + k.aead.Overhead())[:prefixSize]
	copy(out, Magic)
	out[len(Magic)] = Version
	binary.BigEndian.PutUint32(out[len(Magic)+1:], uint32(len(hdr)))
	out = append(out, hdr...)
	aad := out
	out = k.aead.Seal(out, nonce, plaintext, aad)
	return &Chunk{
		Header:       h,
		Bytes:        out,
		PlainSHA256:  sha256.Sum256(plaintext),
		CipherSHA256: sha256.Sum256(out),
		PlainSize:    len(plaintext),
	}, nil
}

// Parse splits a chunk into its header, associated data and ciphertext
// without decrypting. It rejects anything that is not a well-formed chunk.
func Parse(b []byte) (h Header, aad, ciphertext []byte, err error) {
	if len(b) < prefixSize || string(b[:len(Magic)]) != Magic {
		return h, nil, nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if v := b[len(Magic)]; v != Version {
		return h, nil, nil, fmt.Errorf("%w: unsupported version %d", ErrMalformed, v)
	}
	n := binary.BigEndian.Uint32(b[len(Magic)+1:])
	if n == 0 || n > MaxHeaderSize || int(n) > len(b)-prefixSize {
		return h, nil, nil, fmt.Errorf("%w: header length %d out of range", ErrMalformed, n)
	}
	end := prefixSize + int(n)
	dec := json.NewDecoder(bytes.NewReader(b[prefixSize:end]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, nil, nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return h, nil, nil, fmt.Errorf("%w: trailing data after header", ErrMalformed)
	}
	if h.Alg != AlgAES256GCM {
		return h, nil, nil, fmt.Errorf("%w: unsupported algorithm %q", ErrMalformed, h.Alg)
	}
	if _, err := h.Nonce(); err != nil {
		return h, nil, nil, err
	}
	if len(b)-end < 16 {
		return h, nil, nil, fmt.Errorf("%w: ciphertext shorter than its tag", ErrMalformed)
	}
	return h, b[:end], b[end:], nil
}

// Opener decrypts the chunks of one session.
type Opener struct {
	aead cipher.AEAD
}

// UnwrapSessionKey decrypts a wrapped data key with the backoffice identity.
func UnwrapSessionKey(wrapped []byte, identities ...age.Identity) (*Opener, error) {
	r, err := age.Decrypt(bytes.NewReader(wrapped), identities...)
	if err != nil {
		return nil, fmt.Errorf("unwrap session key: %w", err)
	}
	key, err := io.ReadAll(io.LimitReader(r, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("unwrap session key: %w", err)
	}
	defer clear(key)
	if len(key) != KeySize {
		return nil, fmt.Errorf("unwrap session key: %d bytes, want %d", len(key), KeySize)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Opener{aead: aead}, nil
}

// Open authenticates and decrypts a chunk.
func (o *Opener) Open(b []byte) (Header, []byte, error) {
	h, aad, ct, err := Parse(b)
	if err != nil {
		return h, nil, err
	}
	nonce, _ := h.Nonce()
	pt, err := o.aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return h, nil, fmt.Errorf("open chunk %s/%d: %w", h.Track, h.Seq, ErrAuth)
	}
	return h, pt, nil
}
