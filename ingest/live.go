package ingest

import (
	"errors"
	"sync"
	"time"
)

// ErrLivePublisher refuses a second publisher for a camera whose stream is
// still live, over either protocol.
var ErrLivePublisher = errors.New("camera already has a live publisher")

// Publisher is one protocol's publishing session, as Live sees it.
type Publisher interface {
	LastPacket() time.Time
	// TakeOver ends the session because the same camera reconnected; it
	// must not block on the session's own goroutines.
	TakeOver()
}

// Live holds the one live publisher each camera may have, whatever the
// protocol: a camera cannot record two streams into its incident at once.
// The RTSP and WHIP listeners of a node share one.
type Live struct {
	mu sync.Mutex
	by map[string]Publisher
}

// NewLive returns an empty registry.
func NewLive() *Live { return &Live{by: map[string]Publisher{}} }

// Claim makes p the camera's publisher. A publisher silent for staleAfter
// or more is taken over (the camera lost its link and came back); a live
// one makes the claim fail with ErrLivePublisher. It returns how long the
// replaced publisher had been silent, or 0.
func (l *Live) Claim(camera string, p Publisher, staleAfter time.Duration) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var silent time.Duration
	if old := l.by[camera]; old != nil {
		silent = time.Since(old.LastPacket())
		if silent < staleAfter {
			return 0, ErrLivePublisher
		}
		old.TakeOver()
	}
	l.by[camera] = p
	return silent, nil
}

// Release forgets p if it is still the camera's publisher.
func (l *Live) Release(camera string, p Publisher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by[camera] == p {
		delete(l.by, camera)
	}
}
