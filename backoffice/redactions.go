package backoffice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"camvault/catalog"
)

// RedactionStore keeps redaction requests (a redacted copy for a
// subject-access request) and their two-person approval, each step
// audited in the same transaction as the change.
type RedactionStore interface {
	RequestRedaction(ctx context.Context, r catalog.Redaction) (catalog.Redaction, error)
	ApproveRedaction(ctx context.Context, id, by string, now time.Time) (catalog.Redaction, error)
	FinishRedaction(ctx context.Context, id string, ok bool, errText string, now time.Time) error
	RedactionDownloaded(ctx context.Context, id, by string, now time.Time) (catalog.Redaction, error)
	Redaction(ctx context.Context, id string) (catalog.Redaction, error)
	Redactions(ctx context.Context) ([]catalog.Redaction, error)
}

// Redactor finds faces and writes redacted copies. It decrypts footage
// (it holds the identity) and keeps what it decrypts in memory; the
// backoffice sees tracks and plans only as JSON, so the engine's types
// stay its own.
type Redactor interface {
	// Detect finds the faces in an incident's footage and answers the
	// tracks (JSON), each with a thumbnail.
	Detect(ctx context.Context, incident string) (json.RawMessage, error)
	// CheckPlan says what is wrong with a plan (JSON), if anything: an
	// unknown decision, a box outside the frame, an edit without a reason.
	CheckPlan(plan json.RawMessage) error
	// Render writes an approved redaction's bundle (the MP4, its signed
	// report and what verifying it needs) into dir, which must not exist.
	Render(ctx context.Context, r catalog.Redaction, dir string) error
}

// ErrNoFootage is what a Redactor answers for an incident with nothing
// to detect on or render (e.g. no video recorded yet).
var ErrNoFootage = errors.New("the incident has no footage to redact")

func (s *Service) redactionRoutes(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/redactions", ActionRedactionRequest, s.needRedactions(s.serveRedactions))
	s.handle(mux, "GET /api/v1/redactions/{id}", ActionRedactionRequest, s.needRedactions(s.serveRedaction))
	s.handle(mux, "POST /api/v1/incidents/{id}/detect", ActionRedactionRequest, s.needStaff(s.needRedactions(s.serveDetect)))
	s.handle(mux, "POST /api/v1/incidents/{id}/redactions", ActionRedactionRequest, s.needRedactions(s.serveRedactionRequest))
	s.handle(mux, "POST /api/v1/redactions/{id}/approve", ActionRedactionApprove, s.needRedactions(s.serveRedactionApprove))
	s.handle(mux, "GET /api/v1/redactions/{id}/bundle", ActionRedactionRequest, s.needRedactions(s.serveRedactionBundle))
}

// needRedactions answers 503 unless the store, the redactor (which holds
// the identity) and the directory for bundles are all configured.
func (s *Service) needRedactions(h handlerFunc) handlerFunc {
	return needs(s.cfg.Redactions != nil && s.cfg.Redactor != nil && s.cfg.ExportDir != "",
		"this node has no backoffice identity or export directory: redactions cannot be made here", h)
}

func (s *Service) serveRedactions(w http.ResponseWriter, r *http.Request, _ Principal) {
	list, err := s.cfg.Redactions.Redactions(r.Context())
	writeList(s, w, "redactions", list, err)
}

func (s *Service) serveRedaction(w http.ResponseWriter, r *http.Request, _ Principal) {
	x, err := s.cfg.Redactions.Redaction(r.Context(), r.PathValue("id"))
	if s.failed(w, err, "no such redaction", "redaction") {
		return
	}
	writeJSON(w, x)
}

type detectBody struct {
	Reason string `json:"reason"`
}

// serveDetect is POST /api/v1/incidents/{id}/detect (JSON: reason): the
// faces in the incident's footage, as tracks with thumbnails. Finding
// them decrypts the footage (in this process, in memory), so the reason
// is audited first, as a footage view's is.
func (s *Service) serveDetect(w http.ResponseWriter, r *http.Request, p Principal) {
	var body detectBody
	if !s.decode(w, r, &body, "want a JSON object with the reason") {
		return
	}
	body.Reason = strings.TrimSpace(body.Reason)
	if body.Reason == "" || len(body.Reason) > maxReason {
		http.Error(w, fmt.Sprintf("detection needs a reason (at most %d bytes)", maxReason), http.StatusBadRequest)
		return
	}
	ctx, id := r.Context(), r.PathValue("id")
	if _, err := s.staff.Incident(ctx, id); errors.Is(err, catalog.ErrDeleted) {
		http.Error(w, err.Error(), http.StatusGone)
		return
	} else if s.failed(w, err, "no such incident", "detect") {
		return
	}
	if err := s.staff.AddAudit(ctx, s.cfg.Now(), p.Name, "redaction.detected", id, map[string]any{"reason": body.Reason}); err != nil {
		s.internal(w, "detect", err)
		return
	}
	tracks, err := s.cfg.Redactor.Detect(ctx, id)
	switch {
	case errors.Is(err, ErrNoFootage):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		s.internal(w, "detect", err)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(tracks)
	}
}

type redactionBody struct {
	Reason    string          `json:"reason"`
	Reference string          `json:"reference"`
	Plan      json.RawMessage `json:"plan"`
}

// serveRedactionRequest is POST /api/v1/incidents/{id}/redactions (JSON:
// reason, reference — the subject-access request's case number — and the
// plan): it records the request, which a different admin must approve
// before anything is rendered.
func (s *Service) serveRedactionRequest(w http.ResponseWriter, r *http.Request, p Principal) {
	var body redactionBody
	if !s.decode(w, r, &body, "want a JSON object with reason, reference (the request's case number) and plan") {
		return
	}
	if !checkReasonReference(w, &body.Reason, &body.Reference, "a redaction needs", "the request's case number") {
		return
	}
	if len(body.Plan) == 0 || string(body.Plan) == "null" {
		http.Error(w, "a redaction needs a plan: what to blur, black out and mute", http.StatusBadRequest)
		return
	}
	if err := s.cfg.Redactor.CheckPlan(body.Plan); err != nil {
		http.Error(w, "plan: "+err.Error(), http.StatusBadRequest)
		return
	}
	x, err := s.cfg.Redactions.RequestRedaction(r.Context(), catalog.Redaction{ExportRequest: catalog.ExportRequest{
		Incident: r.PathValue("id"), Reason: body.Reason, Reference: body.Reference, RequestedBy: p.Name,
		RequestedAt: s.cfg.Now()}, Plan: body.Plan})
	s.answerRequested(w, "redaction", "/api/v1/redactions/"+x.ID, x, err)
}

// serveRedactionApprove is POST /api/v1/redactions/{id}/approve: a second
// admin approves and the copy is rendered in the background.
func (s *Service) serveRedactionApprove(w http.ResponseWriter, r *http.Request, p Principal) {
	if s.closingForApproval(w) {
		return
	}
	x, err := s.cfg.Redactions.ApproveRedaction(r.Context(), r.PathValue("id"), p.Name, s.cfg.Now())
	s.answerApproved(w, "a", "redaction", x, err, func() {
		s.inBackground(func(ctx context.Context) { s.writeRedaction(ctx, x) })
	})
}

func (s *Service) writeRedaction(ctx context.Context, x catalog.Redaction) {
	s.produce(ctx, "redaction", x.ID, x.Incident, "backoffice.redaction-before-finish",
		func(ctx context.Context, dir string) error { return s.cfg.Redactor.Render(ctx, x, dir) },
		s.cfg.Redactions.FinishRedaction)
}

// resumeRedactions renders again the redactions approved but not finished
// when the node last stopped.
func (s *Service) resumeRedactions(ctx context.Context) error {
	if s.cfg.Redactions == nil || s.cfg.Redactor == nil || s.cfg.ExportDir == "" {
		return nil
	}
	list, err := s.cfg.Redactions.Redactions(ctx)
	if err != nil {
		return fmt.Errorf("resume redactions: %w", err)
	}
	for _, x := range list {
		if x.State != catalog.ExportApproved {
			continue
		}
		s.restart(x.ID, func(ctx context.Context) { s.writeRedaction(ctx, x) })
	}
	return nil
}

// serveRedactionBundle is GET /api/v1/redactions/{id}/bundle: a ready
// redaction's bundle as a tar, audited as downloaded before the first
// byte.
func (s *Service) serveRedactionBundle(w http.ResponseWriter, r *http.Request, p Principal) {
	ctx, id := r.Context(), r.PathValue("id")
	x, err := s.cfg.Redactions.Redaction(ctx, id)
	if s.failed(w, err, "no such redaction", "redaction bundle") {
		return
	}
	s.serveBundle(w, "redaction", x.ID, x.State, func() error {
		_, err := s.cfg.Redactions.RedactionDownloaded(ctx, x.ID, p.Name, s.cfg.Now())
		return err
	})
}
