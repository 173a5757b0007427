package bench

import (
	"context"
	"strings"
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

// SimTarget is where simulated cameras publish: an RTSP server's
// host:port, or, when WHIP is set, a WHIP endpoint base URL to which each
// camera's id is appended (http://host:8889/whip).
type SimTarget struct {
	RTSP string
	WHIP string
}

// Simulate publishes the clip from every camera at once (starts spread over
// one GOP) for d, and reports what each sent. It works against any RTSP
// server that accepts ANNOUNCE/RECORD with Basic credentials and any WHIP
// server that takes a bearer, so the same load can be pointed at another
// server.
func Simulate(ctx context.Context, clip *Clip, to SimTarget, cams []SimCamera, d time.Duration) []SimResult {
	out := make([]SimResult, len(cams))
	var wg sync.WaitGroup
	for i, c := range cams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 2 * time.Second / time.Duration(len(cams)))
			var n int64
			var err error
			if to.WHIP != "" {
				var r WHIPResult
				r, err = clip.PublishWHIP(ctx, WHIPOptions{Endpoint: strings.TrimSuffix(to.WHIP, "/") + "/" + c.ID, Token: c.Secret, Duration: d, Teardown: true})
				n = r.Frames
			} else {
				n, err = clip.publishRaw(ctx, to.RTSP, c.ID, c.Secret, d)
			}
			out[i] = SimResult{Camera: c.ID, Frames: n}
			if err != nil {
				out[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}
