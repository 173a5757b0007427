// Package bufpool recycles the large byte buffers that carry segments and
// sealed chunks through the pipeline. Every camera produces about one
// megabyte every two seconds; allocating (and zeroing) it afresh twice per
// segment costs more CPU than hashing it, and the garbage raises each
// stream's memory. Buffers are pooled by size class.
package bufpool

import "sync"

// Size classes: 4 KiB steps up to 256 KiB (access units), then 64 KiB
// steps up to 8 MiB (segments and chunks). Larger buffers are not pooled.
const (
	smallStep  = 4 << 10
	smallMax   = 256 << 10
	largeStep  = 64 << 10
	largeMax   = 8 << 20
	smallCount = smallMax / smallStep
	maxClasses = smallCount + (largeMax-smallMax)/largeStep
)

var pools [maxClasses + 1]sync.Pool

// class returns n's size class (0: not pooled) and the class's capacity.
func class(n int) (int, int) {
	switch {
	case n <= 0 || n > largeMax:
		return 0, 0
	case n <= smallMax:
		c := (n + smallStep - 1) / smallStep
		return c, c * smallStep
	default:
		k := (n - smallMax + largeStep - 1) / largeStep
		return smallCount + k, smallMax + k*largeStep
	}
}

// Get returns a buffer of length n. Its contents are undefined: callers
// overwrite it entirely.
func Get(n int) []byte {
	c, size := class(n)
	if c == 0 {
		return make([]byte, n)
	}
	if p, ok := pools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, size)
}

// Put returns b to the pool. The caller must not use b afterwards.
func Put(b []byte) {
	c, size := class(cap(b))
	if c == 0 || cap(b) != size {
		return // not a pool-sized buffer
	}
	b = b[:0]
	pools[c].Put(&b)
}
