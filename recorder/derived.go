package recorder

import (
	"runtime"
	"sync"

	"camvault/format/chunk"
	"camvault/media"
	"camvault/stages/transcode"
)

// TranscodeConfig is the recorder's derived-work section: review proxies
// and thumbnails made from the plaintext before it is sealed.
type TranscodeConfig struct {
	Enabled bool
	// Workers transcoding threads (niced below ingest); zero or negative:
	// cores − 1, at least 1.
	Workers int
	// Queue is how many proxy jobs may wait before new ones are shed;
	// default 4 per worker (thumbnails have their own, longer queue).
	Queue int
	// Renderer makes the renditions; default a codec.ProxyRenderer making
	// 640×360 H.264 proxies at 600 kbit/s.
	Renderer transcode.Renderer
}

// Codec strings of the derived tracks' chunk headers.
const (
	ProxyCodec = "fmp4:h264"
	ThumbCodec = "jpeg"
)

// DefaultTranscodeWorkers is the pool size when none is configured: every
// core but one, which is left to ingest.
func DefaultTranscodeWorkers() int { return max(runtime.NumCPU()-1, 1) }

// sessionDerived is one session's derived work in flight. Its methods are
// called with the session's lock held (segment) or from transcode workers
// and Cancel (done), so done never takes the session's lock.
type sessionDerived struct {
	s    *session
	init []byte // the session's original init segment (a copy: the pipeline pools the one it seals)
	jobs sync.WaitGroup

	mu        sync.Mutex // orders the proxy init before the first proxy chunk
	proxyInit []byte     // the proxy init written as proxy/0, nil before
}

// newDerived returns the session's derived-work state, or nil when the
// recorder makes none or the session has no video.
func (r *Recorder) newDerived(s *session, init []byte) *sessionDerived {
	if r.derived == nil {
		return nil
	}
	for _, t := range s.tracks {
		if t.IsVideo() {
			return &sessionDerived{s: s, init: append([]byte(nil), init...)}
		}
	}
	return nil
}

// segment hands original chunk h.Seq to the transcode stage: a thumbnail
// job and a proxy job sharing plain, the caller's copy of the plaintext.
// It never waits: a job the stage refuses becomes a gap record on its
// track at once.
func (d *sessionDerived) segment(h chunk.Header, cp []byte) {
	for _, kind := range []transcode.Kind{transcode.Thumb, transcode.Proxy} {
		d.jobs.Add(1)
		err := d.s.r.derived.TrySubmit(&transcode.Job{Kind: kind, Group: d.s.id, Init: d.init, Segment: cp,
			Done: func(res transcode.Result) { defer d.jobs.Done(); d.done(h, res) }})
		if err != nil { // refused: Done will never be called
			d.jobs.Done()
			d.done(h, transcode.Result{Kind: kind, Err: err})
		}
	}
}

// done turns a job's outcome into items of the session: the rendition as
// a chunk of its track (the proxy init first, once), or a gap record
// where it should have been.
func (d *sessionDerived) done(orig chunk.Header, res transcode.Result) {
	s := d.s
	h := orig
	h.Track, h.Codec = chunk.TrackThumb, ThumbCodec
	if res.Kind == transcode.Proxy {
		h.Track, h.Codec = chunk.TrackProxy, ProxyCodec
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var items []*media.Item
	switch {
	case res.Err != nil:
		note := res.Err.Error()
		if !transcode.IsShed(res.Err) {
			note = "derived work failed: " + note
		}
		items = append(items, &media.Item{Kind: media.ItemGap, Shed: transcode.IsShed(res.Err), Note: note, Header: h})
		if !transcode.IsShed(res.Err) {
			s.r.log.Warn("derived work failed", "incident", s.incident, "session", s.id, "track", h.Track, "seq", h.Seq, "err", res.Err)
		}
	case res.Kind == transcode.Proxy && d.proxyInit == nil:
		ih := s.header(0, 0, 0)
		ih.Track, ih.Codec = chunk.TrackProxy, ProxyCodec
		d.proxyInit = append([]byte(nil), res.Init...) // the item's copy goes back to the pool once sealed
		items = append(items, &media.Item{Plain: res.Init, Header: ih}, &media.Item{Plain: res.Data, Header: h})
	default:
		if res.Kind == transcode.Proxy && string(res.Init) != string(d.proxyInit) {
			// The encoder's settings are fixed, so its parameter sets
			// should be too; a proxy chunk that needs another init is
			// still kept, and the difference is logged for review.
			s.r.log.Warn("proxy init differs from the session's proxy/0", "incident", s.incident, "session", s.id, "seq", h.Seq)
		}
		items = append(items, &media.Item{Plain: res.Data, Header: h})
	}
	for _, it := range items {
		if err := s.enqueue(it); err != nil {
			s.r.log.Error("queue derived chunk", "incident", s.incident, "track", it.Header.Track, "seq", it.Header.Seq, "err", err)
		}
	}
}

// endAfterDerived queues the session's end record once all its derived
// work is queued before it (session.End has shed the jobs still waiting),
// in the background so that the ingest goroutine ending the session is not
// held up by the jobs still running.
func (r *Recorder) endAfterDerived(s *session, end *media.Item) {
	d := s.d
	if d == nil {
		r.submitEnd(s, end)
		return
	}
	r.ends.Add(1)
	go func() {
		defer r.ends.Done()
		d.jobs.Wait()
		r.submitEnd(s, end)
	}()
}

func (r *Recorder) submitEnd(s *session, end *media.Item) {
	if err := s.enqueue(end); err != nil {
		r.log.Error("queue session end", "incident", s.incident, "err", err)
	}
}
