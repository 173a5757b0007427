package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The exports table (see the migrations) holds export requests. An export writes plaintext footage
// for the police, so it takes two admins: one requests (with a reason and
// the police report number), a different one approves. The CHECK keeps
// that rule even against a caller that forgets it.

// Export request states: requested → approved → ready or failed.
const (
	ExportRequested = "requested"
	ExportApproved  = "approved"
	ExportReady     = "ready"
	ExportFailed    = "failed"
)

// Errors export callers branch on.
var (
	// ErrSamePerson: whoever requested an export cannot also approve it.
	ErrSamePerson = errors.New("an export must be approved by someone other than its requester")
	// ErrExportState: the request is not in the state the step needs
	// (approving one already approved, downloading one not ready).
	ErrExportState = errors.New("export request is in the wrong state")
)

// ExportRequest is one request to export an incident for the police.
type ExportRequest struct {
	ID          string     `json:"id"`
	Incident    string     `json:"incident"`
	Reason      string     `json:"reason"`
	Reference   string     `json:"reference"` // police report number
	RequestedBy string     `json:"requested_by"`
	RequestedAt time.Time  `json:"requested_at"`
	ApprovedBy  string     `json:"approved_by,omitempty"`
	ApprovedAt  *time.Time `json:"approved_at,omitempty"`
	State       string     `json:"state"`
	Error       string     `json:"error,omitempty"` // why a failed export failed
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// twoPerson is one kind of request that takes two people (an export, a
// redaction): its table, the word its audit actions and details use, and
// its id prefix. Both kinds share the columns exportCols names.
type twoPerson struct{ table, noun, idPrefix string }

var (
	exportKind    = twoPerson{table: "exports", noun: "export", idPrefix: "x-"}
	redactionKind = twoPerson{table: "redactions", noun: "redaction", idPrefix: "r-"}
)

// RequestExport records a request to export r.Incident (Reason, Reference,
// RequestedBy and RequestedAt set; the id and state are assigned), audited
// as export.requested in the same transaction. The incident must exist
// (ErrNotFound) and not have been deleted by retention (ErrDeleted).
func (c *Catalog) RequestExport(ctx context.Context, r ExportRequest) (ExportRequest, error) {
	if r.Reason == "" || r.Reference == "" || r.RequestedBy == "" {
		return ExportRequest{}, errors.New("an export request needs a reason, a police report reference and who requests it")
	}
	return c.request(ctx, exportKind, r, nil, nil)
}

// request inserts a new request of kind k (with extra columns cols set to
// vals) and audits it as <noun>.requested.
func (c *Catalog) request(ctx context.Context, k twoPerson, r ExportRequest, cols []string, vals []any) (ExportRequest, error) {
	r.ID, r.State = NewID(k.idPrefix, r.RequestedAt), ExportRequested
	r.RequestedAt = r.RequestedAt.UTC()
	r.ApprovedBy, r.ApprovedAt, r.Error, r.FinishedAt = "", nil, "", nil
	colList, marks := "id, incident, reason, reference, requested_by, requested_at, state", "?,?,?,?,?,?,?"
	for _, col := range cols {
		colList, marks = colList+", "+col, marks+",?"
	}
	args := append([]any{r.ID, r.Incident, r.Reason, r.Reference, r.RequestedBy, r.RequestedAt, r.State}, vals...)
	err := c.tx(ctx, func(tx *dbTx) error {
		if _, err := liveIncident(ctx, tx, r.Incident); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+k.table+`(`+colList+`) VALUES(`+marks+`)`, args...); err != nil {
			return err
		}
		return appendAudit(ctx, tx, r.RequestedAt, r.RequestedBy, k.noun+".requested", r.Incident,
			map[string]any{k.noun: r.ID, "reason": r.Reason, "reference": r.Reference})
	})
	if err != nil {
		return ExportRequest{}, fmt.Errorf("request %s of %s: %w", k.noun, r.Incident, err)
	}
	return r, nil
}

// ApproveExport approves a pending request as by, audited as
// export.approved in the same transaction. It refuses the requester
// (ErrSamePerson) and a request that is not pending (ErrExportState), so
// of two concurrent approvals exactly one wins.
func (c *Catalog) ApproveExport(ctx context.Context, id, by string, now time.Time) (ExportRequest, error) {
	return c.approve(ctx, exportKind, id, by, now)
}

func (c *Catalog) approve(ctx context.Context, k twoPerson, id, by string, now time.Time) (ExportRequest, error) {
	if by == "" {
		return ExportRequest{}, fmt.Errorf("approve %s %s: who approves is required", k.noun, id)
	}
	var r ExportRequest
	err := c.tx(ctx, func(tx *dbTx) error {
		var err error
		if r, err = scanExport(tx.QueryRowContext(ctx, `SELECT `+exportCols+` FROM `+k.table+` WHERE id = ?`, id)); err != nil {
			return err
		}
		if r.State != ExportRequested {
			return fmt.Errorf("%w: it is %s", ErrExportState, r.State)
		}
		if r.RequestedBy == by {
			return ErrSamePerson
		}
		// The state in the WHERE makes the transition a compare-and-set,
		// whatever isolation the database gives.
		res, err := tx.ExecContext(ctx, `UPDATE `+k.table+` SET state = ?, approved_by = ?, approved_at = ? WHERE id = ? AND state = ?`,
			ExportApproved, by, now, id, ExportRequested)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: approved meanwhile", ErrExportState)
		}
		at := now.UTC()
		r.State, r.ApprovedBy, r.ApprovedAt = ExportApproved, by, &at
		return appendAudit(ctx, tx, now, by, k.noun+".approved", r.Incident,
			map[string]any{k.noun: id, "requested_by": r.RequestedBy, "reference": r.Reference})
	})
	if err != nil {
		return ExportRequest{}, fmt.Errorf("approve %s %s: %w", k.noun, id, err)
	}
	return r, nil
}

// FinishExport records the outcome of writing an approved export's
// bundle, audited as export.ready or export.failed (with errText) by
// camvault itself, which wrote it.
func (c *Catalog) FinishExport(ctx context.Context, id string, ok bool, errText string, now time.Time) error {
	return c.finish(ctx, exportKind, id, ok, errText, now)
}

func (c *Catalog) finish(ctx context.Context, k twoPerson, id string, ok bool, errText string, now time.Time) error {
	state, action := ExportReady, k.noun+".ready"
	if !ok {
		state, action = ExportFailed, k.noun+".failed"
		if errText == "" {
			errText = "failed"
		}
	} else {
		errText = ""
	}
	err := c.tx(ctx, func(tx *dbTx) error {
		r, err := scanExport(tx.QueryRowContext(ctx, `SELECT `+exportCols+` FROM `+k.table+` WHERE id = ?`, id))
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE `+k.table+` SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = ?`,
			state, errText, now, id, ExportApproved)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: it is %s, not approved", ErrExportState, r.State)
		}
		details := map[string]any{k.noun: id, "approved_by": r.ApprovedBy}
		if !ok {
			details["error"] = errText
		}
		return appendAudit(ctx, tx, now, "camvault", action, r.Incident, details)
	})
	if err != nil {
		return fmt.Errorf("finish %s %s: %w", k.noun, id, err)
	}
	return nil
}

// ExportDownloaded records, in the audit trail as export.downloaded by
// by, that a ready export's bundle is being handed out; it refuses one
// that is not ready (ErrExportState).
func (c *Catalog) ExportDownloaded(ctx context.Context, id, by string, now time.Time) (ExportRequest, error) {
	return c.downloaded(ctx, exportKind, id, by, now)
}

func (c *Catalog) downloaded(ctx context.Context, k twoPerson, id, by string, now time.Time) (ExportRequest, error) {
	var r ExportRequest
	err := c.tx(ctx, func(tx *dbTx) error {
		var err error
		if r, err = scanExport(tx.QueryRowContext(ctx, `SELECT `+exportCols+` FROM `+k.table+` WHERE id = ?`, id)); err != nil {
			return err
		}
		if r.State != ExportReady {
			return fmt.Errorf("%w: it is %s", ErrExportState, r.State)
		}
		return appendAudit(ctx, tx, now, by, k.noun+".downloaded", r.Incident, map[string]any{k.noun: id, "reference": r.Reference})
	})
	if err != nil {
		return ExportRequest{}, fmt.Errorf("download %s %s: %w", k.noun, id, err)
	}
	return r, nil
}

// ExportRequest looks up one export request.
func (c *Catalog) ExportRequest(ctx context.Context, id string) (ExportRequest, error) {
	r, err := scanExport(c.db.QueryRowContext(ctx, `SELECT `+exportCols+` FROM exports WHERE id = ?`, id))
	if err != nil {
		return r, fmt.Errorf("export %s: %w", id, err)
	}
	return r, nil
}

// ExportRequests lists every export request, newest first.
func (c *Catalog) ExportRequests(ctx context.Context) ([]ExportRequest, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+exportCols+` FROM exports ORDER BY requested_at DESC, rowid DESC`)
	return scanAll(rows, err, "list exports", scanExport)
}

const exportCols = `id, incident, reason, reference, requested_by, requested_at, approved_by, approved_at, state, error, finished_at`

func scanExport(s rowScanner) (ExportRequest, error) {
	var r ExportRequest
	var requested, approved, finished dbTime
	var approvedBy sql.NullString
	if err := s.Scan(&r.ID, &r.Incident, &r.Reason, &r.Reference, &r.RequestedBy, &requested,
		&approvedBy, &approved, &r.State, &r.Error, &finished); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return r, ErrNotFound
		}
		return r, err
	}
	r.RequestedAt, r.ApprovedBy = requested.T, approvedBy.String
	r.ApprovedAt, r.FinishedAt = approved.ptr(), finished.ptr()
	return r, nil
}
