package backoffice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/review"
)

// Footage serves decrypted footage to reviewers (review.Reviewer over the
// catalog and the chunk store, holding the backoffice identity). Every
// View is in the audit trail with its reason before anything is
// decrypted.
type Footage interface {
	View(ctx context.Context, req review.Request) (*review.Rendition, error)
}

// A view is what a reviewer opens by stating a reason: for a while, the
// segments of one incident may be fetched under it, each fetch audited
// with that reason. It lives in memory only and belongs to one person.
type view struct {
	incident, viewer, reason string
	expires                  time.Time
}

// viewTTL bounds how long one stated reason covers fetching segments.
const viewTTL = time.Hour

// maxViews bounds the open views (expired ones are pruned first).
const maxViews = 10000

type views struct {
	mu sync.Mutex
	m  map[string]view
}

func (v *views) open(vw view, now time.Time) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]view{}
	}
	for id, x := range v.m {
		if !now.Before(x.expires) {
			delete(v.m, id)
		}
	}
	if len(v.m) >= maxViews {
		return "", errors.New("too many open views")
	}
	id, _ := NewSecret()
	v.m[id] = vw
	return id, nil
}

// get returns the view if it exists, has not expired and is viewer's.
func (v *views) get(id, viewer string, now time.Time) (view, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	x, ok := v.m[id]
	if !ok || x.viewer != viewer || !now.Before(x.expires) {
		return view{}, false
	}
	return x, true
}

// Segment is one original media segment on an incident's timeline.
type Segment struct {
	Session string    `json:"session"`
	Seq     uint64    `json:"seq"`
	Wall    time.Time `json:"wall"`
	StartNS int64     `json:"start_ns"`
	EndNS   int64     `json:"end_ns"`
	Samples int64     `json:"samples"`
	Bytes   int64     `json:"bytes"`
	Proxy   bool      `json:"proxy"` // a review proxy was stored at ingest
}

// Gap is something missing on the timeline, as the manifest records it.
type Gap struct {
	Session string    `json:"session,omitempty"`
	Wall    time.Time `json:"wall"`
	StartNS int64     `json:"start_ns"`
	EndNS   int64     `json:"end_ns"`
	Note    string    `json:"note"`
}

// IncidentDetail is an incident's metadata and timeline: what an operator
// may see, never footage.
type IncidentDetail struct {
	catalog.Incident
	Hold     *catalog.Hold `json:"hold,omitempty"`
	Segments []Segment     `json:"segments"`
	Gaps     []Gap         `json:"gaps"`
	// Track is where the camera reported being during the incident.
	Track *Track `json:"track,omitempty"`
}

// timeline reads the incident's manifest into segments and gaps.
func timeline(lines [][]byte) ([]Segment, []Gap, error) {
	segs, gaps := []Segment{}, []Gap{}
	proxies := map[string]bool{}
	for _, l := range lines {
		var r manifest.Record
		if err := json.Unmarshal(l, &r); err != nil {
			return nil, nil, fmt.Errorf("manifest record: %w", err)
		}
		switch {
		case r.Kind == manifest.KindChunk && r.Track == chunk.TrackOriginal && r.Seq > 0:
			segs = append(segs, Segment{Session: r.Session, Seq: r.Seq, Wall: r.Wall, StartNS: r.StartNS, EndNS: r.EndNS,
				Samples: r.Samples, Bytes: r.PlainSize})
		case r.Kind == manifest.KindChunk && r.Track == chunk.TrackProxy && r.Seq > 0:
			proxies[r.Session+"/"+strconv.FormatUint(r.Seq, 10)] = true
		case r.Kind == manifest.KindGap:
			gaps = append(gaps, Gap{Session: r.Session, Wall: r.Wall, StartNS: r.StartNS, EndNS: r.EndNS, Note: r.Note})
		}
	}
	for i := range segs {
		segs[i].Proxy = proxies[segs[i].Session+"/"+strconv.FormatUint(segs[i].Seq, 10)]
	}
	return segs, gaps, nil
}

func (s *Service) incidentDetail(ctx context.Context, id string) (*IncidentDetail, error) {
	inc, err := s.staff.Incident(ctx, id)
	if err != nil {
		return nil, err
	}
	d := &IncidentDetail{Incident: inc}
	if d.Hold, err = s.staff.ActiveHold(ctx, id); err != nil {
		return nil, err
	}
	lines, err := s.staff.ManifestLines(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.Segments, d.Gaps, err = timeline(lines); err != nil {
		return nil, err
	}
	if d.Track, err = s.track(ctx, inc); err != nil {
		return nil, err
	}
	return d, nil
}

func (s *Service) needFootage(h handlerFunc) handlerFunc {
	return needs(s.cfg.Footage != nil, "this node has no backoffice identity: footage cannot be watched here", h)
}

// serveIncident is GET /api/v1/incidents/{id}: metadata and timeline.
func (s *Service) serveIncident(w http.ResponseWriter, r *http.Request, _ Principal) {
	d, err := s.incidentDetail(r.Context(), r.PathValue("id"))
	if s.failed(w, err, "no such incident", "incident") {
		return
	}
	writeJSON(w, d)
}

type viewRequest struct {
	Reason string `json:"reason"`
}

type viewOpened struct {
	View     string    `json:"view"`
	Incident string    `json:"incident"`
	Expires  time.Time `json:"expires"`
	Segments []Segment `json:"segments"`
}

// maxReason bounds a stated reason; it is stored in the audit trail.
const maxReason = 2000

// serveOpenView is POST /api/v1/incidents/{id}/views (JSON: reason). It
// records the reason in the audit trail and answers a view id under which
// the incident's segments can be fetched for a while.
func (s *Service) serveOpenView(w http.ResponseWriter, r *http.Request, p Principal) {
	var req viewRequest
	if !s.decode(w, r, &req, "want a JSON body with a reason") {
		return
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		http.Error(w, review.ErrNoReason.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Reason) > maxReason {
		http.Error(w, fmt.Sprintf("a reason is at most %d bytes", maxReason), http.StatusBadRequest)
		return
	}
	ctx, id := r.Context(), r.PathValue("id")
	d, err := s.incidentDetail(ctx, id)
	if s.failed(w, err, "no such incident", "open view") {
		return
	}
	now := s.cfg.Now()
	if err := s.staff.AddAudit(ctx, now, p.Name, "footage.view.opened", id, map[string]any{"reason": req.Reason}); err != nil {
		s.internal(w, "open view", err)
		return
	}
	vid, err := s.views.open(view{incident: id, viewer: p.Name, reason: req.Reason, expires: now.Add(viewTTL)}, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSONStatus(w, http.StatusCreated, viewOpened{View: vid, Incident: id, Expires: now.Add(viewTTL), Segments: d.Segments})
}

// serveSegment is GET /api/v1/views/{view}/segments/{seq}[?session=S]:
// one segment's review rendition as a playable fragmented MP4 (init
// segment, then the media segment), decrypted in memory. The view must be
// the caller's own; each fetch is audited by the Footage service with the
// view's reason.
func (s *Service) serveSegment(w http.ResponseWriter, r *http.Request, p Principal) {
	vw, ok := s.views.get(r.PathValue("view"), p.Name, s.cfg.Now())
	if !ok {
		http.Error(w, "no such view (it may have expired: state the reason again)", http.StatusNotFound)
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		http.Error(w, "segment number must be a positive integer", http.StatusBadRequest)
		return
	}
	rend, err := s.cfg.Footage.View(r.Context(), review.Request{Incident: vw.incident, Session: r.URL.Query().Get("session"),
		Seq: seq, Viewer: p.Name, Reason: vw.reason})
	if errors.Is(err, review.ErrNotFound) {
		http.Error(w, "no such segment", http.StatusNotFound)
		return
	} else if err != nil {
		s.internal(w, "footage", err)
		return
	}
	w.Header().Set("Content-Type", mp4Type(rend.Init))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(rend.Init)+len(rend.Segment)))
	w.Write(rend.Init)
	w.Write(rend.Segment)
}

// mp4Type names the MIME type with the codecs a Media Source needs, read
// from the init segment: the avcC box's profile, compatibility and level,
// and AAC-LC when there is an mp4a sample entry.
func mp4Type(init []byte) string {
	var codecs []string
	if i := bytes.Index(init, []byte("avcC")); i >= 0 && len(init) >= i+8 {
		codecs = append(codecs, fmt.Sprintf("avc1.%02x%02x%02x", init[i+5], init[i+6], init[i+7]))
	}
	if bytes.Contains(init, []byte("mp4a")) {
		codecs = append(codecs, "mp4a.40.2")
	}
	if len(codecs) == 0 {
		return "video/mp4"
	}
	return `video/mp4; codecs="` + strings.Join(codecs, ",") + `"`
}
