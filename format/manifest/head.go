package manifest

import (
	"crypto/ed25519"
	"encoding/base64"
	"strconv"
	"time"
)

// Domains of signed heads. Checkpoints and audit heads are signed by the
// same node key; each message starts with its own domain line so that no
// signature over one kind of head can pass for the other.
const (
	CheckpointDomain = "camvault-checkpoint-v1"
	AuditHeadDomain  = "camvault-audit-head-v1"
)

// HeadMessage is the message a signed head's signature covers, one field
// a line, each line ending in a newline: the domain, the scope (a
// checkpoint's incident; nothing for the audit trail), the index, the
// head, and the time as RFC 3339 with nanoseconds in UTC.
func HeadMessage(domain string, index uint64, head string, t time.Time, scope ...string) []byte {
	b := append([]byte(domain), '\n')
	for _, f := range scope {
		b = append(append(b, f...), '\n')
	}
	b = append(strconv.AppendUint(b, index, 10), '\n')
	b = append(append(b, head...), '\n')
	b = append(t.UTC().AppendFormat(b, time.RFC3339Nano), '\n')
	return b
}

// SignHead returns the base64 Ed25519 signature of msg.
func SignHead(key ed25519.PrivateKey, msg []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg))
}

// VerifyHead reports whether sig (base64) is pub's signature of msg. A key
// of the wrong length fails rather than panics: it may come from a file.
func VerifyHead(pub ed25519.PublicKey, msg []byte, sig string) bool {
	raw, err := base64.StdEncoding.DecodeString(sig)
	return err == nil && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, raw)
}
