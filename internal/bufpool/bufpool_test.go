package bufpool

import "testing"

func TestGetPut(t *testing.T) {
	for _, n := range []int{0, 1, smallStep - 1, smallStep, smallMax, smallMax + 1, 1 << 20, largeMax, largeMax + 1} {
		b := Get(n)
		if len(b) != n {
			t.Fatalf("Get(%d): len %d", n, len(b))
		}
		Put(b)
	}
	// A recycled buffer comes back with the requested length.
	b := Get(100_000)
	b[0] = 7
	Put(b)
	if c := Get(90_000); len(c) != 90_000 || cap(c) < 90_000 {
		t.Fatalf("recycled buffer: len %d cap %d", len(c), cap(c))
	}
	Put(make([]byte, 10, 12345)) // foreign sizes are ignored
}
