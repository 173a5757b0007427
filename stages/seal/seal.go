// Package seal is the pipeline stage that encrypts segments: each one is
// hashed and sealed with its session's data key into a chunk whose header
// is the AEAD's associated data (format/chunk). After it, no plaintext is
// left in memory; sealing is CPU-bound and order-free, so it runs on
// several workers.
package seal

import (
	"context"
	"fmt"

	"camvault/internal/bufpool"
	"camvault/media"
	"camvault/pipeline"
)

// Stage returns the seal stage with workers goroutines.
func Stage(workers int) pipeline.Stage[*media.Item, *media.Item] {
	return pipeline.Stage[*media.Item, *media.Item]{Name: "seal", Workers: workers, Fn: Seal}
}

// Seal seals one item's segment. A failure is carried on the item (the
// commit stage records a gap in its place) rather than returned, so the
// session's later segments go on.
func Seal(_ context.Context, it *media.Item) (*media.Item, error) {
	if !it.Pending() {
		return it, nil
	}
	c, err := it.Key.Seal(it.Header, it.Plain)
	bufpool.Put(it.Plain) // the plaintext is not kept past sealing
	it.Plain = nil
	if err != nil {
		it.Err = fmt.Errorf("seal: %w", err)
		return it, nil
	}
	it.Sealed = c
	it.CipherSize = len(c.Bytes)
	return it, nil
}
