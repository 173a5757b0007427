package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestExportRequestFlow: a request needs a live incident and its fields;
// the requester cannot approve; a different admin can, once; the outcome
// is recorded once; a download is allowed only when ready; every step is
// in the audit trail with its actor; the list is newest first.
func TestExportRequestFlow(t *testing.T) { forEachEngine(t, testExportRequestFlow) }

func testExportRequestFlow(t *testing.T, e engine) {
	c := openTest(t, e)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	inc := start(t, c, "s1", t0).Incident

	if _, err := c.RequestExport(ctx, ExportRequest{Incident: "nope", Reason: "r", Reference: "PR-1", RequestedBy: "ann", RequestedAt: t0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown incident: %v, want ErrNotFound", err)
	}
	if _, err := c.RequestExport(ctx, ExportRequest{Incident: inc, Reason: "r", RequestedBy: "ann", RequestedAt: t0}); err == nil {
		t.Fatal("a request without a reference was accepted")
	}
	r, err := c.RequestExport(ctx, ExportRequest{Incident: inc, Reason: "court", Reference: "PR-1", RequestedBy: "ann", RequestedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != ExportRequested || r.ID == "" {
		t.Fatalf("new request: %+v", r)
	}
	if _, err := c.ApproveExport(ctx, r.ID, "ann", t0); !errors.Is(err, ErrSamePerson) {
		t.Fatalf("self-approval: %v, want ErrSamePerson", err)
	}
	if got, _ := c.ExportRequest(ctx, r.ID); got.State != ExportRequested || got.ApprovedBy != "" {
		t.Fatalf("after a refused self-approval: %+v", got)
	}
	if _, err := c.ExportDownloaded(ctx, r.ID, "ann", t0); !errors.Is(err, ErrExportState) {
		t.Fatalf("download before approval: %v, want ErrExportState", err)
	}
	if err := c.FinishExport(ctx, r.ID, true, "", t0); !errors.Is(err, ErrExportState) {
		t.Fatalf("finish before approval: %v, want ErrExportState", err)
	}
	if _, err := c.ApproveExport(ctx, "x-none", "bob", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("approve unknown: %v, want ErrNotFound", err)
	}
	a, err := c.ApproveExport(ctx, r.ID, "bob", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if a.State != ExportApproved || a.ApprovedBy != "bob" || a.ApprovedAt == nil || !a.ApprovedAt.Equal(t0.Add(time.Minute)) || a.Incident != inc {
		t.Fatalf("approved: %+v", a)
	}
	if _, err := c.ApproveExport(ctx, r.ID, "cat", t0); !errors.Is(err, ErrExportState) {
		t.Fatalf("second approval: %v, want ErrExportState", err)
	}
	if err := c.FinishExport(ctx, r.ID, true, "ignored", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.FinishExport(ctx, r.ID, false, "late", t0.Add(3*time.Minute)); !errors.Is(err, ErrExportState) {
		t.Fatalf("second finish: %v, want ErrExportState", err)
	}
	got, err := c.ExportRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ExportReady || got.Error != "" || got.FinishedAt == nil || !got.FinishedAt.Equal(t0.Add(2*time.Minute)) ||
		got.Reason != "court" || got.Reference != "PR-1" || got.RequestedBy != "ann" || !got.RequestedAt.Equal(t0) {
		t.Fatalf("ready: %+v", got)
	}
	if _, err := c.ExportDownloaded(ctx, r.ID, "bob", t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}

	// A failed one keeps its error text; the list is newest first.
	r2, err := c.RequestExport(ctx, ExportRequest{Incident: inc, Reason: "again", Reference: "PR-2", RequestedBy: "bob", RequestedAt: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApproveExport(ctx, r2.ID, "ann", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.FinishExport(ctx, r2.ID, false, "no key", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	list, err := c.ExportRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != r2.ID || list[0].State != ExportFailed || list[0].Error != "no key" || list[1].ID != r.ID {
		t.Fatalf("list: %+v", list)
	}

	var trail []string
	lines, err := c.AuditLines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		var rec AuditRecord
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Details["export"] == r.ID {
			trail = append(trail, rec.Action+" by "+rec.Actor)
			if rec.Incident != inc {
				t.Errorf("%s names incident %q", rec.Action, rec.Incident)
			}
		}
	}
	want := []string{"export.requested by ann", "export.approved by bob", "export.ready by camvault", "export.downloaded by bob"}
	if len(trail) != len(want) {
		t.Fatalf("audit trail of the export: %q, want %q", trail, want)
	}
	for i := range want {
		if trail[i] != want[i] {
			t.Fatalf("audit trail of the export: %q, want %q", trail, want)
		}
	}
}

// TestExportApproveConcurrent: two admins approving the same request at
// once: exactly one succeeds, the other gets ErrExportState, and the
// audit trail has one approval.
func TestExportApproveConcurrent(t *testing.T) { forEachEngine(t, testExportApproveConcurrent) }

func testExportApproveConcurrent(t *testing.T, e engine) {
	c := openTest(t, e)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	inc := start(t, c, "s1", t0).Incident
	for round := 0; round < 10; round++ {
		r, err := c.RequestExport(ctx, ExportRequest{Incident: inc, Reason: "court", Reference: "PR-1", RequestedBy: "ann", RequestedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, who := range []string{"bob", "cat"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.ApproveExport(ctx, r.ID, who, t0)
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrExportState):
				t.Fatalf("losing approval: %v, want ErrExportState", err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d approvals succeeded (%v)", round, won, errs)
		}
		lines, _ := c.AuditLines(ctx)
		approvals := 0
		for _, l := range lines {
			var rec AuditRecord
			json.Unmarshal(l, &rec)
			if rec.Action == "export.approved" && rec.Details["export"] == r.ID {
				approvals++
			}
		}
		if approvals != 1 {
			t.Fatalf("round %d: %d export.approved records", round, approvals)
		}
	}
}

// TestExportSchemaRefusesSelfApproval: the two-person rule holds in the
// table itself, whatever code writes it; a deleted incident cannot be
// requested.
func TestExportSchemaRefusesSelfApproval(t *testing.T) {
	forEachEngine(t, testExportSchemaRefusesSelfApproval)
}

func testExportSchemaRefusesSelfApproval(t *testing.T, e engine) {
	c := openTest(t, e)
	ctx := context.Background()
	inc := start(t, c, "s1", time.Now()).Incident
	r, err := c.RequestExport(ctx, ExportRequest{Incident: inc, Reason: "court", Reference: "PR-1", RequestedBy: "ann", RequestedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.db.ExecContext(ctx, `UPDATE exports SET approved_by = requested_by WHERE id = ?`, r.ID); err == nil {
		t.Fatal("the table let the requester approve")
	}
	// An incident deleted by retention can no longer be asked for.
	if _, err := c.db.ExecContext(ctx, `UPDATE incidents SET deleted_at = ? WHERE id = ?`, time.Now(), inc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RequestExport(ctx, ExportRequest{Incident: inc, Reason: "court", Reference: "PR-2", RequestedBy: "ann", RequestedAt: time.Now()}); !errors.Is(err, ErrDeleted) {
		t.Fatalf("request on a deleted incident: %v, want ErrDeleted", err)
	}
}
