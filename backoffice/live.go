package backoffice

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"strings"
	"time"

	"camvault/catalog"
	"camvault/livegrant"
)

// LiveConfig turns the live view on (serve --live-view): staff allowed
// live.view may watch a recording camera, with a reason, for a limited
// time, through the ingest node's WHEP endpoint.
type LiveConfig struct {
	// Key signs grants; the ingest node checks them with its public half.
	Key ed25519.PrivateKey
	// Max is how long a view lasts at most (default 10 min); a longer
	// watch asks again, with a new reason.
	Max time.Duration
	// StartWithin is how long a grant may wait to be used (default 60 s).
	StartWithin time.Duration
	// URL is the WHEP endpoint a viewer's browser reaches the camera's
	// stream at, for the request that asks (whose host the browser used).
	URL func(r *http.Request, camera string) string
}

// Audit actions of a live view; the ingest node records the end.
const (
	AuditLiveOpened = "live.view.opened"
	AuditLiveEnded  = "live.view.ended"
)

type liveRequest struct {
	Reason string `json:"reason"`
	// Fingerprint binds the grant to the viewer's WebRTC connection: the
	// a=fingerprint value of the offer it will post (the web UI sends it).
	Fingerprint string `json:"fingerprint"`
}

// validFingerprint accepts "sha-256 " and 32 colon-separated hex bytes.
func validFingerprint(f string) bool {
	hexes, ok := strings.CutPrefix(strings.ToLower(f), "sha-256 ")
	if !ok || len(hexes) != 32*3-1 {
		return false
	}
	for i, c := range hexes {
		if i%3 == 2 {
			if c != ':' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// LiveGrant is the answer to a grant request.
type LiveGrant struct {
	WHEP     string    `json:"whep_url"`
	Token    string    `json:"token"`
	Grant    string    `json:"grant"`
	Person   string    `json:"person"`
	Incident string    `json:"incident"`
	Camera   string    `json:"camera"`
	StartBy  time.Time `json:"start_by"`
	Until    time.Time `json:"until"`
}

// serveLive is POST /api/v1/incidents/{id}/live (JSON: reason): the
// grant for one live view of the incident's camera while it records,
// audited with its reason before it is answered.
func (s *Service) serveLive(w http.ResponseWriter, r *http.Request, p Principal) {
	lc := s.cfg.Live
	if lc == nil {
		http.Error(w, "live view is off on this node (serve --live-view)", http.StatusNotFound)
		return
	}
	var req liveRequest
	if !s.decode(w, r, &req, "want a JSON body with a reason") {
		return
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Reason == "" {
		http.Error(w, "a live view needs a reason", http.StatusBadRequest)
		return
	}
	if len(req.Reason) > maxReason {
		http.Error(w, fmt.Sprintf("a reason is at most %d bytes", maxReason), http.StatusBadRequest)
		return
	}
	if req.Fingerprint != "" && !validFingerprint(req.Fingerprint) {
		http.Error(w, `fingerprint is the offer's a=fingerprint value, "sha-256 " and 32 hex bytes`, http.StatusBadRequest)
		return
	}
	ctx, id := r.Context(), r.PathValue("id")
	inc, err := s.staff.Incident(ctx, id)
	if s.failed(w, err, "no such incident", "live view") {
		return
	}
	if inc.Status != catalog.StatusOpen {
		http.Error(w, "incident "+id+" is not recording: only a recording camera can be watched live", http.StatusNotFound)
		return
	}
	now := s.cfg.Now()
	g, err := livegrant.New(p.Name, string(p.Role), id, inc.Camera, req.Reason, now, lc.StartWithin, lc.Max)
	if err != nil {
		s.internal(w, "live view", err)
		return
	}
	g.Fingerprint = strings.ToLower(req.Fingerprint)
	tok, err := livegrant.Sign(lc.Key, g)
	if err != nil {
		s.internal(w, "live view", err)
		return
	}
	if err := s.staff.AddAudit(ctx, now, p.Name, AuditLiveOpened, id, map[string]any{"reason": req.Reason, "grant": g.ID,
		"camera": inc.Camera, "until": g.End().UTC().Format(time.RFC3339), "bound": g.Fingerprint != ""}); err != nil {
		s.internal(w, "live view", err)
		return
	}
	writeJSONStatus(w, http.StatusCreated, LiveGrant{WHEP: lc.URL(r, inc.Camera), Token: tok, Grant: g.ID, Person: p.Name,
		Incident: id, Camera: inc.Camera, StartBy: time.Unix(g.StartBy, 0).UTC(), Until: g.End().UTC()})
}
