package seal

import (
	"context"
	"crypto/rand"
	"testing"

	"camvault/internal/bufpool"
	"camvault/media"
)

// BenchmarkSealStage: the seal stage's Fn on one 1 MiB segment (a 2 s
// segment of a 4 Mbit/s camera), from a pooled plaintext buffer as the
// segmenter hands it over to a sealed chunk released after, as the store
// stage releases it. allocs/op is what one segment allocates on the way.
func BenchmarkSealStage(b *testing.B) {
	key, _ := testKey(b)
	const size = 1 << 20
	src := make([]byte, size)
	if _, err := rand.Read(src); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(size)
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		plain := bufpool.Get(size)
		copy(plain, src)
		out, err := Seal(ctx, &media.Item{Header: header(seq), Key: key, Plain: plain})
		if err != nil || out.Err != nil {
			b.Fatal(err, out.Err)
		}
		out.Sealed.Release()
	}
}
