// Package livegrant is the live-view grant: what the backoffice signs
// when a member of staff, allowed to and giving a reason, asks to watch a
// recording camera, and what the ingest node checks before it forwards
// that camera's stream. The grant is signed with Ed25519 so that the
// ingest node holds only the public key: it can check a grant but cannot
// make one, and needs no staff accounts (docs/FORMAT.md, "Live-view
// grant").
package livegrant

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// prefix names the token's format and version; it is signed with the rest.
const prefix = "cvlg1."

// MaxToken bounds a token before anything is decoded.
const MaxToken = 8 << 10

// Grant is one live view a person may open. Times are Unix seconds in the
// token.
type Grant struct {
	ID       string `json:"id"`     // random, 128 bits hex: what one-time use remembers
	Person   string `json:"person"` // the staff account it was given to
	Role     string `json:"role"`
	Incident string `json:"incident"`
	Camera   string `json:"camera"`
	Reason   string `json:"reason"`
	// Fingerprint, when set, is the viewer's DTLS certificate fingerprint
	// as its offer states it ("sha-256 AB:CD:…"): the grant then opens a
	// view for that browser's connection only, so a token read off the
	// screen or a log is no use to anyone else.
	Fingerprint string `json:"fingerprint,omitempty"`
	Issued      int64  `json:"iat"`
	StartBy     int64  `json:"start_by"` // the view must start before this
	Until       int64  `json:"until"`    // the view ends at this
}

// Errors of Verify; each is a refusal the ingest node answers 401.
var (
	ErrMalformed = errors.New("live-view grant malformed")
	ErrSignature = errors.New("live-view grant not signed by this deployment's backoffice")
	ErrExpired   = errors.New("live-view grant expired: ask for a new one")
)

// New fills a grant's id and times: it must be used within startWithin
// and the view lasts at most max from now.
func New(person, role, incident, camera, reason string, now time.Time, startWithin, max time.Duration) (Grant, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Grant{}, fmt.Errorf("grant id: %w", err)
	}
	// A view shorter than the start window must start before it ends.
	startWithin = min(startWithin, max)
	return Grant{ID: hex.EncodeToString(id[:]), Person: person, Role: role, Incident: incident, Camera: camera, Reason: reason,
		Issued: now.Unix(), StartBy: now.Add(startWithin).Unix(), Until: now.Add(max).Unix()}, nil
}

// Sign returns the bearer token for g.
func Sign(key ed25519.PrivateKey, g Grant) (string, error) {
	body, err := json.Marshal(g)
	if err != nil {
		return "", fmt.Errorf("encode grant: %w", err)
	}
	signed := prefix + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(signed))), nil
}

// Verify checks token's signature with pub and that it may still start a
// view at now, and returns the grant.
func Verify(pub ed25519.PublicKey, token string, now time.Time) (Grant, error) {
	var g Grant
	if len(token) > MaxToken || !strings.HasPrefix(token, prefix) {
		return g, ErrMalformed
	}
	dot := strings.LastIndexByte(token, '.')
	if dot <= len(prefix) {
		return g, ErrMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return g, ErrMalformed
	}
	if !ed25519.Verify(pub, []byte(token[:dot]), sig) {
		return g, ErrSignature
	}
	body, err := base64.RawURLEncoding.DecodeString(token[len(prefix):dot])
	if err != nil {
		return g, ErrMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil || g.ID == "" || g.Person == "" || g.Camera == "" || g.Incident == "" || g.Until < g.StartBy {
		return Grant{}, ErrMalformed
	}
	if now.Unix() >= g.StartBy {
		return Grant{}, ErrExpired
	}
	return g, nil
}

// End is when the view the grant opens must end.
func (g Grant) End() time.Time { return time.Unix(g.Until, 0) }
