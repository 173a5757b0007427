package ingest

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// A Feed is a live copy of one camera's RTP packets as they arrive, for
// the control room's live view. The protocol server taps its packets into
// the feed beside (never instead of) what it hands the Recorder: a
// viewer's copy is taken with a non-blocking send into a bounded queue
// of its own, so a slow or stuck viewer loses packets and never holds up
// the recording. With no viewer a packet costs one atomic load.
type Feed struct {
	Camera string
	Tracks []FeedTrack
	// Keyframe asks the camera for a keyframe (a WebRTC PLI); nil when
	// the protocol cannot (RTSP): a viewer then waits for the next one.
	Keyframe func()

	n       atomic.Int32
	mu      sync.Mutex
	viewers map[*FeedViewer]struct{}
	ended   bool
	done    chan struct{}
}

// FeedTrack describes a feed's track for a viewer's negotiation.
type FeedTrack struct {
	Video     bool
	MimeType  string // as WebRTC names it: video/H264, video/VP8, audio/opus
	ClockRate uint32
	Channels  uint16
	Fmtp      string
	// SPS and PPS are H.264 parameter sets the camera gave out of band
	// (RTSP's SDP); a viewer gets them ahead of its first keyframe, since
	// the stream itself may never repeat them.
	SPS, PPS []byte
}

// FeedPacket is one packet of a feed's track.
type FeedPacket struct {
	Track  int
	Packet *rtp.Packet // shared by every viewer: read, never modify
}

// FeedViewer is one viewer's queue.
type FeedViewer struct {
	C       <-chan FeedPacket
	c       chan FeedPacket
	dropped atomic.Int64
	feed    *Feed
}

// NewFeed returns a feed for a camera's tracks.
func NewFeed(camera string, tracks []FeedTrack, keyframe func()) *Feed {
	return &Feed{Camera: camera, Tracks: tracks, Keyframe: keyframe, viewers: map[*FeedViewer]struct{}{}, done: make(chan struct{})}
}

// Write copies pkt to every viewer that has room; the caller keeps pkt.
func (f *Feed) Write(track int, pkt *rtp.Packet) {
	if f == nil || f.n.Load() == 0 {
		return
	}
	fp := FeedPacket{Track: track, Packet: pkt.Clone()}
	f.mu.Lock()
	defer f.mu.Unlock()
	for v := range f.viewers {
		select {
		case v.c <- fp:
		default:
			v.dropped.Add(1)
		}
	}
}

// Subscribe adds a viewer whose queue holds up to buffer packets; nil
// when the feed has ended.
func (f *Feed) Subscribe(buffer int) *FeedViewer {
	c := make(chan FeedPacket, buffer)
	v := &FeedViewer{C: c, c: c, feed: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return nil
	}
	f.viewers[v] = struct{}{}
	f.n.Add(1)
	return v
}

// Dropped counts the packets this viewer lost because its queue was full.
func (v *FeedViewer) Dropped() int64 { return v.dropped.Load() }

// Close removes the viewer.
func (v *FeedViewer) Close() {
	f := v.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.viewers[v]; ok {
		delete(f.viewers, v)
		f.n.Add(-1)
	}
}

// Viewers is how many viewers the feed has.
func (f *Feed) Viewers() int { return int(f.n.Load()) }

// Done is closed when the camera's session ends.
func (f *Feed) Done() <-chan struct{} { return f.done }

func (f *Feed) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ended {
		f.ended = true
		close(f.done)
	}
}

// Feeds holds the feed of each camera publishing on this node, whatever
// the protocol (like Live, one per camera). A nil *Feeds taps nothing.
type Feeds struct {
	mu sync.Mutex
	by map[string]*Feed
}

// NewFeeds returns an empty registry.
func NewFeeds() *Feeds { return &Feeds{by: map[string]*Feed{}} }

// Publish makes f its camera's feed, ending one it replaces; on a nil
// registry it returns nil, which taps nothing.
func (fs *Feeds) Publish(f *Feed) *Feed {
	if fs == nil {
		return nil
	}
	fs.mu.Lock()
	old := fs.by[f.Camera]
	fs.by[f.Camera] = f
	fs.mu.Unlock()
	if old != nil {
		old.end()
	}
	return f
}

// Unpublish ends f and forgets it if it is still its camera's feed.
func (fs *Feeds) Unpublish(f *Feed) {
	if fs == nil || f == nil {
		return
	}
	fs.mu.Lock()
	if fs.by[f.Camera] == f {
		delete(fs.by, f.Camera)
	}
	fs.mu.Unlock()
	f.end()
}

// Get returns a camera's feed, or nil when it is not publishing here.
func (fs *Feeds) Get(camera string) *Feed {
	if fs == nil {
		return nil
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.by[camera]
}
