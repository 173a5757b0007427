package chunk

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"

	"golang.org/x/crypto/chacha20poly1305"
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

// BenchmarkAEAD compares the two AEADs considered for the chunk format on
// 1 MB segments: the faster one on the target is the format's algorithm.
func BenchmarkAEAD(b *testing.B) {
	pt := make([]byte, 1<<20)
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	xc, _ := chacha20poly1305.NewX(key)
	for _, c := range []struct {
		name string
		aead cipher.AEAD
	}{{"aes-256-gcm", gcm}, {"xchacha20-poly1305", xc}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(pt)))
			nonce := make([]byte, c.aead.NonceSize())
			out := make([]byte, 0, len(pt)+16)
			for i := 0; i < b.N; i++ {
				out = c.aead.Seal(out[:0], nonce, pt, nil)
			}
		})
	}
}
