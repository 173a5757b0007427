// Package review is how an authorised person watches footage: it finds
// a segment's review proxy, decrypts it with the backoffice identity, and
// when the proxy was shed at ingest makes it now from the original, in
// memory. Nothing it decrypts is written anywhere; every view is recorded
// in the audit trail with its reason.
package review

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"filippo.io/age"

	"camvault/format/chunk"
	"camvault/format/manifest"
)

// Source is what review reads: an incident's manifest, wrapped keys and
// sealed chunks (evidence.CatalogSource on a node).
type Source interface {
	ManifestLines(ctx context.Context) ([][]byte, error)
	WrappedKeys(ctx context.Context) (map[string][]byte, error)
	Chunk(ctx context.Context, object string) ([]byte, error)
}

// Renderer makes a proxy from an original segment (codec.ProxyRenderer).
type Renderer interface {
	Proxy(ctx context.Context, init, segment []byte) (proxyInit, proxySegment []byte, err error)
}

// Auditor records a view (catalog.AddAudit on a node).
type Auditor interface {
	AddAudit(ctx context.Context, at time.Time, actor, action, incident string, details map[string]any) error
}

// ErrNoReason refuses a view without a stated reason.
var ErrNoReason = errors.New("viewing footage needs a reason")

// ErrNotFound is a segment the incident does not have (or no longer has).
var ErrNotFound = errors.New("no such segment")

// Request names one segment to watch.
type Request struct {
	Incident string
	Session  string // empty: the incident's first session that has Seq
	Seq      uint64 // the original chunk's sequence number (1 is the first media segment)
	Viewer   string
	Reason   string
}

// Rendition is a playable fMP4: the proxy's init segment followed by one
// media segment.
type Rendition struct {
	Init, Segment []byte
	Session       string
	// OnDemand: the ingest proxy was shed (or failed), so this one was made
	// now from the original chunk; Original names that chunk.
	OnDemand bool
	Original string
}

// Reviewer serves proxies. On-demand proxies are cached in memory only,
// up to CacheBytes (default 64 MiB), least recently used first out.
type Reviewer struct {
	Identities []age.Identity
	Renderer   Renderer
	Audit      Auditor
	Now        func() time.Time
	CacheBytes int

	mu    sync.Mutex
	cache map[string]*cached
	used  int
	tick  uint64
}

type cached struct {
	r    Rendition
	size int
	last uint64
}

// Proxy returns the review proxy of one segment, after recording the view.
func (v *Reviewer) Proxy(ctx context.Context, src Source, req Request) (*Rendition, error) {
	if req.Reason == "" || req.Viewer == "" {
		return nil, ErrNoReason
	}
	recs, err := records(ctx, src)
	if err != nil {
		return nil, err
	}
	session := req.Session
	if session == "" {
		for _, r := range recs {
			if r.Kind == manifest.KindChunk && r.Track == chunk.TrackOriginal && r.Seq == req.Seq {
				session = r.Session
				break
			}
		}
	}
	find := func(track string, seq uint64) *manifest.Record {
		for i := range recs {
			r := &recs[i]
			if r.Kind == manifest.KindChunk && r.Session == session && r.Track == track && r.Seq == seq {
				return r
			}
		}
		return nil
	}
	orig := find(chunk.TrackOriginal, req.Seq)
	if req.Seq == 0 || orig == nil {
		return nil, fmt.Errorf("incident %s session %q segment %d: %w", req.Incident, session, req.Seq, ErrNotFound)
	}
	proxyInit, proxySeg := find(chunk.TrackProxy, 0), find(chunk.TrackProxy, req.Seq)
	onDemand := proxyInit == nil || proxySeg == nil

	// The view is recorded before any footage is decrypted: a view that
	// cannot be audited does not happen.
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	rendition := "proxy"
	if onDemand {
		rendition = "proxy made on demand"
	}
	if err := v.Audit.AddAudit(ctx, now(), req.Viewer, "footage.viewed", req.Incident, map[string]any{
		"session": session, "segment": req.Seq, "reason": req.Reason, "rendition": rendition,
	}); err != nil {
		return nil, fmt.Errorf("audit the view: %w", err)
	}

	key := req.Incident + "/" + session + "/" + fmt.Sprint(req.Seq)
	if onDemand {
		if r, ok := v.cached(key); ok {
			return r, nil
		}
	}
	open, err := v.opener(ctx, src, session)
	if err != nil {
		return nil, err
	}
	plain := func(r *manifest.Record) ([]byte, error) {
		b, err := src.Chunk(ctx, r.Object)
		if err != nil {
			return nil, err
		}
		_, pt, err := open.Open(b)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(pt)
		if hex.EncodeToString(sum[:]) != r.PlainSHA256 {
			return nil, fmt.Errorf("chunk %s does not match its manifest record", r.Object)
		}
		return pt, nil
	}
	out := &Rendition{Session: session, OnDemand: onDemand, Original: orig.Object}
	if !onDemand {
		if out.Init, err = plain(proxyInit); err != nil {
			return nil, err
		}
		if out.Segment, err = plain(proxySeg); err != nil {
			return nil, err
		}
		return out, nil
	}
	init := find(chunk.TrackOriginal, 0)
	if init == nil {
		return nil, fmt.Errorf("session %s has no init segment: %w", session, ErrNotFound)
	}
	initPT, err := plain(init)
	if err != nil {
		return nil, err
	}
	segPT, err := plain(orig)
	if err != nil {
		return nil, err
	}
	if out.Init, out.Segment, err = v.Renderer.Proxy(ctx, initPT, segPT); err != nil {
		return nil, fmt.Errorf("proxy of %s: %w", orig.Object, err)
	}
	v.store(key, out)
	return out, nil
}

func records(ctx context.Context, src Source) ([]manifest.Record, error) {
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		return nil, err
	}
	recs := make([]manifest.Record, 0, len(lines))
	for _, l := range lines {
		var r manifest.Record
		if err := json.Unmarshal(l, &r); err != nil {
			return nil, fmt.Errorf("manifest record: %w", err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

func (v *Reviewer) opener(ctx context.Context, src Source, session string) (*chunk.Opener, error) {
	keys, err := src.WrappedKeys(ctx)
	if err != nil {
		return nil, err
	}
	wrapped, ok := keys[session]
	if !ok {
		return nil, fmt.Errorf("no key for session %s (shredded?): %w", session, ErrNotFound)
	}
	return chunk.UnwrapSessionKey(wrapped, v.Identities...)
}

func (v *Reviewer) cached(key string) (*Rendition, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cache[key]
	if !ok {
		return nil, false
	}
	v.tick++
	c.last = v.tick
	r := c.r
	return &r, true
}

func (v *Reviewer) store(key string, r *Rendition) {
	limit := v.CacheBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	size := len(r.Init) + len(r.Segment)
	if size > limit {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache == nil {
		v.cache = map[string]*cached{}
	}
	if old, ok := v.cache[key]; ok {
		v.used -= old.size
	}
	for v.used+size > limit {
		var oldest string
		var oldestTick uint64
		for k, c := range v.cache {
			if oldest == "" || c.last < oldestTick {
				oldest, oldestTick = k, c.last
			}
		}
		v.used -= v.cache[oldest].size
		delete(v.cache, oldest)
	}
	v.tick++
	v.cache[key] = &cached{r: *r, size: size, last: v.tick}
	v.used += size
}
