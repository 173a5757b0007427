package codec

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestPartsReaderReadsAsOne: a partsReader over pieces (empty ones
// among them) reads and seeks exactly as a bytes.Reader over the pieces
// joined, whatever the order of reads and seeks.
func TestPartsReaderReadsAsOne(t *testing.T) {
	parts := [][]byte{[]byte("ftyp-moov-init"), {}, []byte("moof"), []byte("mdat-payload-0123456789")}
	joined := bytes.Join(parts, nil)
	rnd := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		want, got := bytes.NewReader(joined), newPartsReader(parts...)
		if got.Size() != want.Size() {
			t.Fatalf("size %d, want %d", got.Size(), want.Size())
		}
		for step := range 20 {
			if rnd.IntN(3) == 0 {
				off, whence := int64(rnd.IntN(len(joined)+4)), rnd.IntN(3)
				if whence == io.SeekEnd {
					off = -off
				}
				w, werr := want.Seek(off, whence)
				g, gerr := got.Seek(off, whence)
				if w != g || (werr == nil) != (gerr == nil) {
					t.Fatalf("round %d step %d: Seek(%d, %d) = %d, %v; want %d, %v", round, step, off, whence, g, gerr, w, werr)
				}
				continue
			}
			n := rnd.IntN(len(joined) + 2)
			wb, gb := make([]byte, n), make([]byte, n)
			wn, werr := want.Read(wb)
			gn, gerr := got.Read(gb)
			if n > 0 && (wn != gn || !bytes.Equal(wb[:wn], gb[:gn]) || (werr == io.EOF) != (gerr == io.EOF)) {
				t.Fatalf("round %d step %d: Read(%d) = %d %q %v; want %d %q %v", round, step, n, gn, gb[:gn], gerr, wn, wb[:wn], werr)
			}
		}
	}
}
