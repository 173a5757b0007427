package backoffice

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Webhook request headers.
const (
	HeaderEvent     = "Camvault-Event"     // the alert type
	HeaderDelivery  = "Camvault-Delivery"  // the outbox id: receivers deduplicate on it
	HeaderSignature = "Camvault-Signature" // t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
)

// ErrSignature is wrapped by every VerifySignature failure.
var ErrSignature = errors.New("webhook signature invalid")

// minSecretLen is the shortest webhook secret accepted.
const minSecretLen = 16

// SignatureHeader returns the Camvault-Signature value for body sent at t.
// The timestamp is inside the MAC, so a receiver that checks it against
// its clock refuses a captured request replayed later.
func SignatureHeader(secret []byte, t time.Time, body []byte) string {
	sec := t.Unix()
	return "t=" + strconv.FormatInt(sec, 10) + ",v1=" + hex.EncodeToString(signatureMAC(secret, sec, body))
}

func signatureMAC(secret []byte, sec int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(sec, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a Camvault-Signature header against the body as
// received (the raw bytes, before any JSON decoding) and the receiver's
// clock: it fails unless one v1 value is the body's HMAC under secret and
// the timestamp is within window of now, either side. Receivers should
// also drop a Camvault-Delivery id they have already processed: delivery
// is at least once.
func VerifySignature(secret []byte, header string, body []byte, now time.Time, window time.Duration) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no secret to check against", ErrSignature)
	}
	if window <= 0 {
		return fmt.Errorf("%w: replay window must be positive", ErrSignature)
	}
	var sec int64
	haveT := false
	var macs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed element %q", ErrSignature, part)
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || haveT {
				return fmt.Errorf("%w: malformed or repeated timestamp", ErrSignature)
			}
			sec, haveT = n, true
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%w: malformed v1 value", ErrSignature)
			}
			macs = append(macs, b)
		}
		// Other keys are for later schemes; ignored.
	}
	if !haveT || len(macs) == 0 {
		return fmt.Errorf("%w: want t=<unix>,v1=<hex>", ErrSignature)
	}
	want := signatureMAC(secret, sec, body)
	match := false
	for _, m := range macs {
		if hmac.Equal(m, want) {
			match = true
		}
	}
	if !match {
		return fmt.Errorf("%w: HMAC does not match the body", ErrSignature)
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > window || d < -window {
		return fmt.Errorf("%w: timestamp %s is %s from now, outside the %s replay window", ErrSignature,
			at.UTC().Format(time.RFC3339), d.Round(time.Second), window)
	}
	return nil
}

// LoadSecret reads a webhook secret file: its content, surrounding
// whitespace removed, is the HMAC key. A file others can read is refused.
func LoadSecret(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("webhook secret %s is accessible by other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if len(s) < minSecretLen {
		return nil, fmt.Errorf("webhook secret %s: shorter than %d characters", path, minSecretLen)
	}
	return []byte(s), nil
}
