package bench

import (
	"context"
	"sync"
	"time"
)

// SimCamera is one simulated bodycam: where it publishes and as whom.
type SimCamera struct {
	ID, Secret string
}

// SimResult is what one simulated camera sent.
type SimResult struct {
	Camera string `json:"camera"`
	Frames int64  `json:"frames"`
	Error  string `json:"error,omitempty"`
}

// Simulate publishes the clip from every camera at once (starts spread over
// one GOP) to an RTSP server at addr for d, and reports what each sent.
// It works against any RTSP server that accepts ANNOUNCE/RECORD with Basic
// credentials, so the same load can be pointed at another server.
func Simulate(ctx context.Context, clip *Clip, addr string, cams []SimCamera, d time.Duration) []SimResult {
	out := make([]SimResult, len(cams))
	var wg sync.WaitGroup
	for i, c := range cams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 2 * time.Second / time.Duration(len(cams)))
			n, err := clip.publishRaw(ctx, addr, c.ID, c.Secret, d)
			out[i] = SimResult{Camera: c.ID, Frames: n}
			if err != nil {
				out[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}
