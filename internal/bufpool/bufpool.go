// Package bufpool recycles the large byte buffers that carry segments and
// sealed chunks through the pipeline. Every camera produces about one
// megabyte every two seconds; allocating (and zeroing) it afresh twice per
// segment costs more CPU than hashing it, and the garbage raises each
// stream's memory. Buffers are pooled by size class.
package bufpool

import "sync"

const (
	classSize  = 64 << 10 // granularity of the size classes
	maxClasses = 128      // buffers above 8 MiB are not pooled
)

var pools [maxClasses + 1]sync.Pool

func class(n int) int { return (n + classSize - 1) / classSize }

// Get returns a buffer of length n. Its contents are undefined: callers
// overwrite it entirely.
func Get(n int) []byte {
	c := class(n)
	if c == 0 || c > maxClasses {
		return make([]byte, n)
	}
	if p, ok := pools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, c*classSize)
}

// Put returns b to the pool. The caller must not use b afterwards.
func Put(b []byte) {
	c := cap(b) / classSize
	if c == 0 || c > maxClasses || cap(b) != c*classSize {
		return // not a pool-sized buffer
	}
	b = b[:0]
	pools[c].Put(&b)
}
