package pipeline

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential retry delay with jitter: the n-th wait
// (from 0) is drawn uniformly from [d/2, d], where d is Base doubled n
// times but never more than Max. The jitter keeps the workers of a stage
// (and the nodes sharing one object store) from retrying in lockstep when
// the store comes back; the lower half keeps a floor under each wait.
type Backoff struct {
	Base time.Duration // first delay; default 50 ms
	Max  time.Duration // longest delay; default 2 s
}

// Delay returns the wait before retry n, n counting from 0.
func (b Backoff) Delay(n int) time.Duration {
	base, ceil := b.Base, b.Max
	if base <= 0 {
		base = 50 * time.Millisecond
	}
	if ceil <= 0 {
		ceil = 2 * time.Second
	}
	d := base
	for i := 0; i < n && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps for Delay(n), or until ctx is done (its error).
func (b Backoff) Wait(ctx context.Context, n int) error {
	t := time.NewTimer(b.Delay(n))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
