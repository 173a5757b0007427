package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The redactions table holds requests for a redacted copy of an incident
// (a subject-access request): the same two-person rule and states as an
// export, plus the plan, the JSON of what is blurred, blacked out and
// muted. The catalog keeps the plan as given; the backoffice checks it.

// Redaction is one request for a redacted copy. Reference is the
// subject-access request's case number.
type Redaction struct {
	ExportRequest
	Plan json.RawMessage `json:"plan"`
}

// RequestRedaction records a request (as RequestExport, with its plan),
// audited as redaction.requested.
func (c *Catalog) RequestRedaction(ctx context.Context, r Redaction) (Redaction, error) {
	if r.Reason == "" || r.Reference == "" || r.RequestedBy == "" || len(r.Plan) == 0 {
		return Redaction{}, errors.New("a redaction request needs a reason, a case reference, who requests it and a plan")
	}
	if !json.Valid(r.Plan) {
		return Redaction{}, errors.New("a redaction's plan must be JSON")
	}
	x, err := c.request(ctx, redactionKind, r.ExportRequest, []string{"plan"}, []any{string(r.Plan)})
	return Redaction{ExportRequest: x, Plan: r.Plan}, err
}

// ApproveRedaction approves a pending redaction as by, audited as
// redaction.approved; it refuses the requester (ErrSamePerson) and one
// not pending (ErrExportState).
func (c *Catalog) ApproveRedaction(ctx context.Context, id, by string, now time.Time) (Redaction, error) {
	if _, err := c.approve(ctx, redactionKind, id, by, now); err != nil {
		return Redaction{}, err
	}
	return c.Redaction(ctx, id)
}

// FinishRedaction records the outcome of rendering an approved redaction,
// audited as redaction.ready or redaction.failed.
func (c *Catalog) FinishRedaction(ctx context.Context, id string, ok bool, errText string, now time.Time) error {
	return c.finish(ctx, redactionKind, id, ok, errText, now)
}

// RedactionDownloaded audits a ready redaction's bundle being handed out
// (redaction.downloaded); it refuses one that is not ready.
func (c *Catalog) RedactionDownloaded(ctx context.Context, id, by string, now time.Time) (Redaction, error) {
	if _, err := c.downloaded(ctx, redactionKind, id, by, now); err != nil {
		return Redaction{}, err
	}
	return c.Redaction(ctx, id)
}

// Redaction looks up one redaction request, with its plan.
func (c *Catalog) Redaction(ctx context.Context, id string) (Redaction, error) {
	r, err := scanRedaction(c.db.QueryRowContext(ctx, `SELECT `+exportCols+`, plan FROM redactions WHERE id = ?`, id))
	if err != nil {
		return r, fmt.Errorf("redaction %s: %w", id, err)
	}
	return r, nil
}

// Redactions lists every redaction request, newest first.
func (c *Catalog) Redactions(ctx context.Context) ([]Redaction, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+exportCols+`, plan FROM redactions ORDER BY requested_at DESC, rowid DESC`)
	return scanAll(rows, err, "list redactions", scanRedaction)
}

func scanRedaction(s rowScanner) (Redaction, error) {
	var plan string
	var r Redaction
	x, err := scanExport(planScanner{s, &plan})
	if err != nil {
		return r, err
	}
	return Redaction{ExportRequest: x, Plan: json.RawMessage(plan)}, nil
}

// planScanner adds the plan column after the export columns, so that
// scanExport reads both kinds.
type planScanner struct {
	rowScanner
	plan *string
}

func (p planScanner) Scan(dest ...any) error { return p.rowScanner.Scan(append(dest, p.plan)...) }
