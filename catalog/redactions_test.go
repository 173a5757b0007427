package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestRedactionFlow: a redaction request keeps its plan; the two-person
// rule and the states are an export's; every step is audited as
// redaction.*, and nothing of it shows among exports.
func TestRedactionFlow(t *testing.T) { forEachEngine(t, testRedactionFlow) }

func testRedactionFlow(t *testing.T, e engine) {
	c := openTest(t, e)
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	inc := start(t, c, "s1", t0).Incident
	plan := json.RawMessage(`{"tracks":[{"id":1,"blur":true,"reason":"bystander"}]}`)

	if _, err := c.RequestRedaction(ctx, Redaction{ExportRequest: ExportRequest{Incident: inc, Reason: "sar", Reference: "SAR-1", RequestedBy: "rita", RequestedAt: t0}}); err == nil {
		t.Fatal("a request without a plan was accepted")
	}
	if _, err := c.RequestRedaction(ctx, Redaction{ExportRequest: ExportRequest{Incident: inc, Reason: "sar", Reference: "SAR-1", RequestedBy: "rita", RequestedAt: t0}, Plan: json.RawMessage(`{`)}); err == nil {
		t.Fatal("a plan that is not JSON was accepted")
	}
	if _, err := c.RequestRedaction(ctx, Redaction{ExportRequest: ExportRequest{Incident: "nope", Reason: "sar", Reference: "SAR-1", RequestedBy: "rita", RequestedAt: t0}, Plan: plan}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown incident: %v", err)
	}
	r, err := c.RequestRedaction(ctx, Redaction{ExportRequest: ExportRequest{Incident: inc, Reason: "sar", Reference: "SAR-1", RequestedBy: "rita", RequestedAt: t0}, Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == "" || r.ID[:2] != "r-" || r.State != ExportRequested {
		t.Fatalf("new redaction: %+v", r)
	}
	if _, err := c.ApproveRedaction(ctx, r.ID, "rita", t0); !errors.Is(err, ErrSamePerson) {
		t.Fatalf("self-approval: %v, want ErrSamePerson", err)
	}
	if _, err := c.RedactionDownloaded(ctx, r.ID, "ben", t0); !errors.Is(err, ErrExportState) {
		t.Fatalf("download before approval: %v", err)
	}
	a, err := c.ApproveRedaction(ctx, r.ID, "ben", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if a.State != ExportApproved || a.ApprovedBy != "ben" || string(a.Plan) != string(plan) {
		t.Fatalf("approved: %+v", a)
	}
	if _, err := c.ApproveRedaction(ctx, r.ID, "cat", t0); !errors.Is(err, ErrExportState) {
		t.Fatalf("second approval: %v", err)
	}
	if err := c.FinishRedaction(ctx, r.ID, true, "", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RedactionDownloaded(ctx, r.ID, "ben", t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	list, err := c.Redactions(ctx)
	if err != nil || len(list) != 1 || list[0].State != ExportReady || string(list[0].Plan) != string(plan) {
		t.Fatalf("list: %+v %v", list, err)
	}
	if xs, err := c.ExportRequests(ctx); err != nil || len(xs) != 0 {
		t.Fatalf("exports: %+v %v", xs, err)
	}
	lines, err := c.AuditLines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		var rec AuditRecord
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Details["redaction"] == r.ID {
			got = append(got, rec.Action+" by "+rec.Actor)
		}
	}
	want := []string{"redaction.requested by rita", "redaction.approved by ben", "redaction.ready by camvault", "redaction.downloaded by ben"}
	if len(got) != len(want) {
		t.Fatalf("audit %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("audit %v, want %v", got, want)
		}
	}
}
