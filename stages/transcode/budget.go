package transcode

import "time"

// budget is the stage's CPU budget: a token bucket of CPU-seconds that
// fills at rate (cores) up to depth, and that each job's measured CPU
// time is taken from. Its methods are called with Stage.mu held.
//
// A job is admitted on credit and charged what it really cost once it
// has run, so the bucket may go into debt by one job; nothing more is
// admitted until the debt is paid back, so over any long spell the stage
// uses at most rate cores (plus one bucket's depth). Admission reserves
// the job's estimated cost (the running mean of its kind), so that a
// burst of offers cannot all be admitted against the same credit.
type budget struct {
	rate, depth float64    // cores; CPU-seconds
	tokens      float64    // CPU-seconds available (negative: debt)
	reserved    float64    // estimates of admitted jobs not yet charged
	est         [2]float64 // by Kind: the running mean of measured costs
	measured    [2]bool
	at          time.Time // when tokens was last refilled
}

// Estimates before the first job of a kind is measured: on the high
// side of a 720p segment's (a thumbnail ~0.02 CPU-s, a proxy ~0.2 on one
// thread), so that a burst of offers at start-up cannot all be admitted
// against credit whose cost nobody knows yet.
var initialEstimate = [2]float64{Thumb: 0.05, Proxy: 0.5}

func newBudget(cores float64, burst time.Duration, now time.Time) *budget {
	depth := cores * burst.Seconds()
	return &budget{rate: cores, depth: depth, tokens: depth, at: now, est: initialEstimate}
}

func (b *budget) refill(now time.Time) {
	if d := now.Sub(b.at).Seconds(); d > 0 {
		b.tokens = min(b.depth, b.tokens+d*b.rate)
	}
	b.at = now
}

// admit reports whether a job of kind may start on the credit left, and
// returns the estimate it reserves. A thumbnail needs any credit; a
// proxy, many times dearer, needs more than half the bucket, so that
// proxies never use up the credit that the next thumbnails need.
func (b *budget) admit(k Kind, now time.Time) (float64, bool) {
	b.refill(now)
	avail := b.tokens - b.reserved
	if avail <= 0 || k == Proxy && avail <= b.depth/2 {
		return 0, false
	}
	b.reserved += b.est[k]
	return b.est[k], true
}

// charge takes a job's measured CPU from the bucket in place of its
// reservation, and folds it into its kind's estimate.
func (b *budget) charge(k Kind, reserved, cpu float64, now time.Time) {
	b.refill(now)
	b.reserved = max(0, b.reserved-reserved)
	b.tokens -= cpu
	if !b.measured[k] {
		b.est[k], b.measured[k] = cpu, true
	} else {
		b.est[k] += (cpu - b.est[k]) / 4
	}
}

// refund gives back the reservation of a job that never ran.
func (b *budget) refund(reserved float64) {
	b.reserved = max(0, b.reserved-reserved)
}
