package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"testing"
)

// benchRaw is the floor for sealing: the bare primitives on one buffer.
func benchRaw(b *testing.B, pt []byte) {
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	out := make([]byte, 0, len(pt)+16)
	for i := 0; i < b.N; i++ {
		sha256.Sum256(pt)
		out = aead.Seal(out[:0], nonce, pt, nonce)
		sha256.Sum256(out)
	}
}
