// Package pipeline is camvault's stage engine: typed stages joined by
// bounded channels, each stage served by its own pool of workers.
//
// The model is Intel TBB's parallel_pipeline, with one difference: order is
// kept per key rather than globally. A Source numbers the items of each key
// as they are submitted (0, 1, 2, ... for the n-th accepted item of that
// key); a parallel stage may finish them in any order, and an Ordered stage
// hands them to its Fn in that per-key order again. Keying by incident track
// means one slow stream holds back only its own commits, not everybody's.
//
// A typical chain:
//
//	src := pipeline.NewSource[Segment]("segments", 64, m)
//	sealed := pipeline.Then(ctx, pipeline.From(src), sealStage, 64)     // parallel
//	stored := pipeline.Then(ctx, sealed, storeStage, 64)               // parallel
//	run := pipeline.Sink(ctx, stored, commitStage)                     // Ordered, 1 worker
//	... src.Submit(ctx, trackKey, seg) ...
//	src.Close()
//	err := run.Wait()
//
// Backpressure: every queue is bounded, so when the last stage stalls the
// queues fill and Source.Submit blocks. Producers that must never block
// (derived work such as review proxies) use TrySubmit and shed instead.
//
// Failures travel with the item. When a Fn returns an error (or panics,
// which is recovered into a *PanicError), the item keeps flowing with its
// error attached: later stages do not run their Fn on it, but every stage
// with an OnError callback is told, and an Ordered stage reports it in the
// item's place in the key's order. So nothing is dropped silently, the owner
// can record a gap exactly where it belongs, and Ordered stages never wait
// for an item that will not come.
//
// Shutdown: Source.Close lets everything already accepted drain through
// every stage before Run.Wait returns nil. Cancelling a context given to
// Then or Sink stops the whole run instead: items in the queues are
// abandoned, and Wait returns once every worker has returned (a Fn that
// ignores its context delays this).
//
// Memory is bounded: the queues and the workers hold at most the sum of
// the queue sizes and worker counts. An Ordered stage also buffers the
// items that overtook an earlier item of their key still held upstream;
// that buffer grows for as long as the earlier item is held, so a stage
// before an Ordered one bounds how long it holds an item (a timeout, a
// retry budget) and hands on only small items (the large buffers
// released). Per-key state in Ordered stages is released whenever a
// key has nothing in flight; the Source's per-key counter lives until
// Source.Forget.
package pipeline
