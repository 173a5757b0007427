package backoffice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"camvault/catalog"
)

// Exports and redactions follow one two-person workflow: a request with
// a reason and a reference, approval by a different admin, then work in
// the background. These helpers keep their answers identical.

// checkReasonReference trims and checks a request's reason and reference;
// need names the workflow in the error ("an export needs").
func checkReasonReference(w http.ResponseWriter, reason, reference *string, need, referenceIs string) bool {
	*reason, *reference = strings.TrimSpace(*reason), strings.TrimSpace(*reference)
	if *reason == "" || *reference == "" {
		http.Error(w, fmt.Sprintf("%s a reason and a reference (%s)", need, referenceIs), http.StatusBadRequest)
		return false
	}
	if len(*reason) > maxReason || len(*reference) > maxReference {
		http.Error(w, fmt.Sprintf("a reason is at most %d bytes, a reference at most %d", maxReason, maxReference), http.StatusBadRequest)
		return false
	}
	return true
}

// answerRequested answers the recording of a request: 201 with its
// location, or why the incident cannot have one.
func (s *Service) answerRequested(w http.ResponseWriter, what, location string, x any, err error) {
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		http.Error(w, "no such incident", http.StatusNotFound)
	case errors.Is(err, catalog.ErrDeleted):
		http.Error(w, err.Error(), http.StatusGone)
	case err != nil:
		s.internal(w, "request "+what, err)
	default:
		w.Header().Set("Location", location)
		writeJSONStatus(w, http.StatusCreated, x)
	}
}

// closingForApproval refuses an approval while the Service closes: the
// work it starts could not finish before the end.
func (s *Service) closingForApproval(w http.ResponseWriter) bool {
	if s.ctx != nil && s.ctx.Err() != nil {
		http.Error(w, "the backoffice is shutting down; approve again after it restarts", http.StatusServiceUnavailable)
		return true
	}
	return false
}

// answerApproved answers an approval (article and what: "an", "export"),
// starting the background work when it was recorded.
func (s *Service) answerApproved(w http.ResponseWriter, article, what string, x any, err error, start func()) {
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		http.Error(w, "no such "+what, http.StatusNotFound)
	case errors.Is(err, catalog.ErrExportState):
		http.Error(w, "this "+what+" is not waiting for approval", http.StatusConflict)
	case errors.Is(err, catalog.ErrSamePerson):
		http.Error(w, fmt.Sprintf("a second admin must approve: whoever requested %s %s cannot approve it", article, what), http.StatusForbidden)
	case err != nil:
		s.internal(w, "approve "+what, err)
	default:
		start()
		writeJSONStatus(w, http.StatusAccepted, x)
	}
}

// inBackground runs work in a goroutine the Service owns: Close cancels
// it and waits, so its outcome is recorded (interrupted work is marked
// failed). Before Start nothing cancels it, but it is still waited for.
func (s *Service) inBackground(work func(context.Context)) {
	ctx := s.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		work(ctx)
	}()
}

// restart begins again, in the background, the work of an approved
// request that did not finish before the node last stopped; its partial
// bundle is removed first.
func (s *Service) restart(id string, work func(context.Context)) {
	if dir, err := s.bundleDir(id); err == nil {
		os.RemoveAll(dir)
	}
	s.inBackground(work)
}
