// Package camera is what a node knows of its cameras apart from their
// media: ids, secrets and how they are checked, and the events cameras
// post besides their streams. It imports no streaming protocol: registering
// a camera (the CLI) or checking its secret needs none.
package camera

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
)

// ErrUnauthorized is returned for an unknown camera, a wrong secret or a
// revoked camera: callers must not tell these apart on the wire.
var ErrUnauthorized = errors.New("camera authentication failed")

// Camera is an authenticated camera.
type Camera struct {
	ID      string
	Officer string
}

// Registry finds a registered camera's stored secret MAC.
type Registry interface {
	LookupCamera(ctx context.Context, id string) (officer string, secretMAC []byte, revoked bool, err error)
}

// Authenticator checks camera credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, cameraID, secret string) (Camera, error)
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidID reports whether id is acceptable as a camera id (and so as an
// RTSP path and a URL segment).
func ValidID(id string) bool { return idPattern.MatchString(id) }

// NewSecret returns a fresh camera secret: 160 random bits, base32 without
// padding, so it survives URLs and RTSP userinfo unescaped.
func NewSecret() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new camera secret: %w", err)
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]), nil
}

// SecretMAC is how a camera secret is stored: HMAC-SHA-256 under the
// server pepper. A fast MAC, not a slow KDF: the secret has 160 random bits,
// and a slow hash per connection attempt would hand attackers a CPU lever.
func SecretMAC(pepper []byte, secret string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// PepperAuth authenticates cameras against their stored secret MACs.
type PepperAuth struct {
	Cameras Registry
	Pepper  []byte
}

// Authenticate implements Authenticator.
func (a *PepperAuth) Authenticate(ctx context.Context, cameraID, secret string) (Camera, error) {
	got := SecretMAC(a.Pepper, secret) // computed even for unknown ids: same work either way
	if !ValidID(cameraID) {
		return Camera{}, ErrUnauthorized
	}
	officer, want, revoked, err := a.Cameras.LookupCamera(ctx, cameraID)
	if err != nil || revoked || !hmac.Equal(got, want) {
		return Camera{}, ErrUnauthorized
	}
	return Camera{ID: cameraID, Officer: officer}, nil
}
