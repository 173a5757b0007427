package transcode

import (
	"log/slog"
	"sync"

	"camvault/format/chunk"
	"camvault/internal/bufpool"
	"camvault/media"
)

// Codec strings of the derived tracks' chunk headers.
const (
	ProxyCodec = "fmp4:h264"
	ThumbCodec = "jpeg"
)

// Session is one ingest session's derived work: the branch beside the
// evidence path. It turns each original segment into a thumbnail job and
// a proxy job, and each job's outcome into items for the session's own
// pipeline (the rendition as a chunk of its track, or a gap record where
// it should have been), so derived chunks are sealed, stored and
// committed exactly as the originals are.
type Session struct {
	stage *Stage
	group string
	init  []byte       // the session's original init segment (a copy: the pipeline pools the one it seals)
	initH chunk.Header // the original init's header, which the proxy init's copies
	emit  func(*media.Item) error
	log   *slog.Logger
	jobs  sync.WaitGroup

	mu        sync.Mutex // orders the proxy init before the first proxy chunk
	proxyInit []byte     // the proxy init written as proxy/0, nil before
}

// NewSession starts the derived work of the session named group, whose
// original init segment is init, sealed under header initH. emit queues an item on the session's
// pipeline; it is called from transcode workers, from Cancel's caller and
// from Segment's, so it must not wait for a lock those hold.
func (s *Stage) NewSession(group string, init []byte, initH chunk.Header, emit func(*media.Item) error, log *slog.Logger) *Session {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{stage: s, group: group, init: append([]byte(nil), init...), initH: initH, emit: emit, log: log}
}

// Segment offers original chunk h.Seq to the workers: a thumbnail job
// and a proxy job. It decides at once, before anything is copied, which
// of them the stage takes (queue room in items and bytes, CPU budget);
// only if it takes one is plain copied, into one pooled buffer both jobs
// share, and plain is never kept. It never waits. The returned function
// queues the jobs taken and emits a gap record for each one refused; the
// caller calls it exactly once, after queueing the original chunk, so
// that the derived items follow the original in the session's order.
func (d *Session) Segment(h chunk.Header, plain []byte) (queue func()) {
	var jobs [2]*Job
	var refused [2]error
	hd := &hold{n: len(plain)}
	taken := false
	for _, kind := range []Kind{Thumb, Proxy} {
		j := &Job{Kind: kind, Group: d.group, Init: d.init}
		j.Done = func(res Result) { defer d.jobs.Done(); d.done(h, res) }
		if refused[kind] = d.stage.admit(j, hd); refused[kind] == nil {
			jobs[kind], taken = j, true
		}
	}
	if taken {
		hd.buf = bufpool.Get(len(plain))
		copy(hd.buf, plain)
		d.stage.m.copied.Add(float64(len(plain)))
		for _, j := range jobs {
			if j != nil {
				j.Segment = hd.buf
			}
		}
	}
	return func() {
		for kind, j := range jobs {
			if j == nil {
				d.done(h, Result{Kind: Kind(kind), Err: refused[kind]})
				continue
			}
			d.jobs.Add(1)
			if err := d.stage.enqueue(j); err != nil { // closed meanwhile: Done will never be called
				d.jobs.Done()
				d.done(h, Result{Kind: j.Kind, Err: err})
			}
		}
	}
}

// Cancel sheds the session's jobs still waiting for a worker (each
// becomes a gap record); the running ones finish.
func (d *Session) Cancel() { d.stage.Cancel(d.group) }

// Wait returns once every job handed to Segment has its items queued.
func (d *Session) Wait() { d.jobs.Wait() }

func (d *Session) done(orig chunk.Header, res Result) {
	h := orig
	h.Track, h.Codec = chunk.TrackThumb, ThumbCodec
	if res.Kind == Proxy {
		h.Track, h.Codec = chunk.TrackProxy, ProxyCodec
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var items []*media.Item
	switch {
	case res.Err != nil:
		note := res.Err.Error()
		if !IsShed(res.Err) {
			note = "derived work failed: " + note
			d.log.Warn("derived work failed", "incident", h.Incident, "session", h.Session, "track", h.Track, "seq", h.Seq, "err", res.Err)
		}
		items = append(items, &media.Item{Kind: media.ItemGap, Shed: IsShed(res.Err), Note: note, Header: h})
	case res.Kind == Proxy && d.proxyInit == nil:
		ih := d.initH
		ih.Track, ih.Codec = chunk.TrackProxy, ProxyCodec
		d.proxyInit = append([]byte(nil), res.Init...) // the item's copy goes back to the pool once sealed
		items = append(items, &media.Item{Plain: res.Init, Header: ih}, &media.Item{Plain: res.Data, Header: h})
	default:
		if res.Kind == Proxy && string(res.Init) != string(d.proxyInit) {
			// The encoder's settings are fixed, so its parameter sets
			// should be too; a proxy chunk that needs another init is
			// still kept, and the difference is logged for review.
			d.log.Warn("proxy init differs from the session's proxy/0", "incident", h.Incident, "session", h.Session, "seq", h.Seq)
		}
		items = append(items, &media.Item{Plain: res.Data, Header: h})
	}
	for _, it := range items {
		if err := d.emit(it); err != nil {
			d.log.Error("queue derived chunk", "incident", h.Incident, "track", it.Header.Track, "seq", it.Header.Seq, "err", err)
		}
	}
}
