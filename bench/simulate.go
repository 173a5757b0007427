package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
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
	// Bytes is the video payload sent; SHA256 hashes the NAL units of
	// every picture sent, in order, to compare with what was recorded.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Error  string `json:"error,omitempty"`
}

// SimTarget is where simulated cameras publish: an RTSP server's
// host:port, or, when WHIP is set, a WHIP endpoint base URL to which each
// camera's id is appended (http://host:8889/whip).
type SimTarget struct {
	RTSP string
	WHIP string
	// Events, when set, is the ingest base URL (http://host:8889) to which
	// each camera posts its two spoken warnings before it publishes.
	Events string
	// PreEvent is the buffer from before activation each camera sends
	// first, faster than real time.
	PreEvent time.Duration
	// Reconnects splits each camera's run into Reconnects+1 connections:
	// each but the last ends without a teardown, as when the network
	// drops, and the camera connects again at once.
	Reconnects int
	// Loss drops this fraction of WebRTC packets on the way (repaired by
	// NACK where possible); RTSP runs over TCP, which has no loss to
	// simulate.
	Loss float64
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
			err := postWarnings(ctx, to.Events, c)
			if err != nil {
				out[i] = SimResult{Camera: c.ID, Error: err.Error()}
				return
			}
			parts := max(to.Reconnects, 0) + 1
			for k := 0; k < parts && err == nil; k++ {
				last, part, pre := k == parts-1, d/time.Duration(parts), time.Duration(0)
				if k == 0 {
					pre = to.PreEvent
				}
				var sent int64
				// Right after a drop the server may not have ended the old
				// session yet and refuses a second live publisher: retry.
				for try := 0; try < 20; try++ {
					if to.WHIP != "" {
						var r WHIPResult
						r, err = clip.PublishWHIP(ctx, WHIPOptions{Endpoint: strings.TrimSuffix(to.WHIP, "/") + "/" + c.ID, Token: c.Secret,
							Duration: part, Teardown: last, PreEvent: pre, Loss: to.Loss})
						sent = r.Frames
					} else {
						sent, err = clip.publishRaw(ctx, to.RTSP, c.ID, c.Secret, part, pre, !last)
					}
					if err == nil || sent > 0 || !refusedAsLive(err) {
						break
					}
					time.Sleep(250 * time.Millisecond)
				}
				n += sent
			}
			out[i] = SimResult{Camera: c.ID, Frames: n, Bytes: clip.payloadBytes(n), SHA256: clip.sentHash(n)}
			if err != nil {
				out[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}

// postWarnings sends the protocol's two spoken warnings, a second apart,
// as the camera would before it starts recording.
func postWarnings(ctx context.Context, base string, c SimCamera) error {
	if base == "" {
		return nil
	}
	for n := 1; n <= 2; n++ {
		if n == 2 {
			time.Sleep(time.Second)
		}
		u := strings.TrimSuffix(base, "/") + "/cameras/" + c.ID + "/events"
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(fmt.Sprintf(`{"type":"warning","n":%d}`, n)))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("warning %d: %w", n, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("warning %d: %s", n, resp.Status)
		}
	}
	return nil
}

// refusedAsLive reports a server refusing a publisher because the
// camera's previous connection still counts as live (RTSP 503, WHIP 409).
func refusedAsLive(err error) bool {
	var st *ErrWHIPStatus
	if errors.As(err, &st) {
		return st.Code == http.StatusConflict
	}
	return strings.Contains(err.Error(), ": 503 ")
}

// sentHash is the SHA-256 of the NAL units of the clip's first n pictures,
// looped, in the order they were sent.
func (c *Clip) sentHash(n int64) string {
	h := sha256.New()
	for i := int64(0); i < n; i++ {
		for _, nalu := range c.NALUs[i%int64(len(c.NALUs))] {
			h.Write(nalu)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
