package catalog

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkCommitStreams: 200 streams commit chunks at once (a goroutine
// each, a camera and session each), on SQLite and on PostgreSQL; one
// iteration is one chunk from every stream. It reports each commit's
// latency (the chunk row + manifest record transaction, CommitChunk) as
// p50 and p99, and commits per second.
func BenchmarkCommitStreams(b *testing.B) {
	const streams = 200
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			dsn := e.dsn(b)
			if e.name == "postgres" {
				// Durable commits, as SQLite's are (the tests' schemas
				// turn the WAL's fsync off).
				u, err := url.Parse(dsn)
				if err != nil {
					b.Fatal(err)
				}
				q := u.Query()
				q.Set("synchronous_commit", "on")
				u.RawQuery = q.Encode()
				dsn = u.String()
			}
			c, err := Open(dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			now := time.Now()
			incidents := make([]string, streams)
			for i := range streams {
				cam := fmt.Sprintf("cam%d", i)
				if err := c.AddCamera(ctx, Camera{ID: cam, Officer: "o", SecretMAC: []byte("m"), CreatedAt: now}); err != nil {
					b.Fatal(err)
				}
				s, err := c.StartSession(ctx, SessionStart{Camera: cam, Officer: "o", Session: "s" + cam, WrappedKey: []byte("k"), Now: now, Grace: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				incidents[i] = s.Incident
			}
			var mu sync.Mutex
			var lat []time.Duration
			seq := 0
			start := time.Now()
			for b.Loop() {
				seq++
				var wg sync.WaitGroup
				for i := range streams {
					wg.Go(func() {
						t := time.Now()
						if _, err := c.CommitChunk(ctx, Chunk{Incident: incidents[i], Session: fmt.Sprintf("scam%d", i), Track: "original",
							Seq: uint64(seq), Object: fmt.Sprintf("o%d-%d", i, seq), Wall: t, RetainUntil: t, PlainSHA256: "p", CipherSHA256: "c"}); err != nil {
							b.Error(err)
							return
						}
						d := time.Since(t)
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			elapsed := time.Since(start)
			slices.Sort(lat)
			at := func(q float64) float64 {
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(at(0.5), "commit-p50-ms")
			b.ReportMetric(at(0.99), "commit-p99-ms")
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "commits/s")
		})
	}
}
