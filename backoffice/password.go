package backoffice

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// MinPasswordLen is the shortest password accepted.
const MinPasswordLen = 12

// argon2id parameters: 64 MiB and one pass over two lanes take about
// 60-90 ms on the development machine (2 shared cores), inside the
// ~100 ms a login may cost; the memory is what makes guessing expensive
// on GPUs. They are stored in every hash, so they can be raised later
// without invalidating old hashes.
const (
	argonTime    = 1
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	argonKeyLen  = 32
	argonSaltLen = 16
)

var b64 = base64.RawStdEncoding

// HashPassword returns the PHC-style argon2id encoding of password:
// $argon2id$v=19$m=65536,t=1,p=2$SALT$HASH.
func HashPassword(password string) (string, error) {
	if len(password) < MinPasswordLen {
		return "", fmt.Errorf("password shorter than %d characters", MinPasswordLen)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches the encoded hash,
// comparing in constant time.
func VerifyPassword(encoded, password string) (bool, error) {
	f := strings.Split(encoded, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return false, errors.New("password hash: not an argon2id PHC string")
	}
	var v int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(f[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("password hash: unsupported version %q", f[2])
	}
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 {
		return false, fmt.Errorf("password hash: bad parameters %q", f[3])
	}
	salt, err := b64.DecodeString(f[4])
	if err != nil {
		return false, fmt.Errorf("password hash: salt: %w", err)
	}
	want, err := b64.DecodeString(f[5])
	if err != nil || len(want) == 0 {
		return false, errors.New("password hash: bad key")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NewSecret returns a random 256-bit secret (hex) and its SHA-256 digest,
// which is all that is stored of it: API tokens and session ids.
func NewSecret() (secret string, digest []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	secret = hex.EncodeToString(b[:])
	return secret, Digest(secret)
}

// Digest is the stored form of a token or session id.
func Digest(secret string) []byte {
	d := sha256.Sum256([]byte(secret))
	return d[:]
}
