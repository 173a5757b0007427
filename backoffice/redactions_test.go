package backoffice_test

import (
	"archive/tar"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/evidence"
	"camvault/keys"
)

// A plan with one moving box and one mute, each with its reason (times in
// nanoseconds, as the engine's plan has them).
const boxPlan = `{"plan":{"From":0,"To":0,"Tracks":[],"Edits":[` +
	`{"Kind":"box","From":0,"To":400000000,"Start":{"X":0.1,"Y":0.1,"W":0.3,"H":0.3},"End":{"X":0.5,"Y":0.5,"W":0.3,"H":0.3},"Reason":"a bystander's face"},` +
	`{"Kind":"mute","From":0,"To":200000000,"Reason":"a name said aloud"}]}}`

func (e *exportStaff) requestRedaction(t *testing.T, incident, tok, plan string) catalog.Redaction {
	t.Helper()
	code, body := e.c.do(http.MethodPost, "/api/v1/incidents/"+incident+"/redactions", tok, "",
		`{"reason":"subject access request","reference":"SAR-2026-3","plan":`+plan+`}`)
	if code != http.StatusCreated {
		t.Fatalf("request redaction: %d %s", code, body)
	}
	var x catalog.Redaction
	if err := json.Unmarshal([]byte(body), &x); err != nil {
		t.Fatal(err)
	}
	if x.ID == "" || x.State != catalog.ExportRequested || x.Reference != "SAR-2026-3" || len(x.Plan) == 0 {
		t.Fatalf("new redaction: %+v", x)
	}
	return x
}

func (e *exportStaff) redaction(t *testing.T, id string) catalog.Redaction {
	t.Helper()
	code, body := e.c.do(http.MethodGet, "/api/v1/redactions/"+id, e.ann, "", "")
	if code != http.StatusOK {
		t.Fatalf("get redaction: %d %s", code, body)
	}
	var x catalog.Redaction
	if err := json.Unmarshal([]byte(body), &x); err != nil {
		t.Fatal(err)
	}
	return x
}

func (e *exportStaff) redactionDone(t *testing.T, id string) catalog.Redaction {
	t.Helper()
	var x catalog.Redaction
	waitFor(t, 90*time.Second, "the redaction to finish", func() bool {
		x = e.redaction(t, id)
		return x.State == catalog.ExportReady || x.State == catalog.ExportFailed
	})
	return x
}

// redactionTrail is "action by actor" for each audit record of redaction id.
func (e *exportStaff) redactionTrail(t *testing.T, id string) []string {
	t.Helper()
	code, body := e.c.do(http.MethodGet, "/api/v1/audit", e.audr, "", "")
	if code != http.StatusOK {
		t.Fatalf("audit: %d %s", code, body)
	}
	var recs []catalog.AuditRecord
	if err := json.Unmarshal([]byte(body), &recs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.Details["redaction"] == id {
			out = append(out, r.Action+" by "+r.Actor)
		}
	}
	return out
}

// TestRedactionTwoPersonRule: a redaction needs a reason, a reference and
// a valid plan (every edit with a reason); operators and auditors may not
// request one, reviewers and admins may; only an admin other than the
// requester approves; every step is audited. The incident's key is not
// real, so the render fails and says why, leaving nothing behind.
func TestRedactionTwoPersonRule(t *testing.T) {
	e := newExportStaff(t)
	inc := newIncident(t, e.n)
	path := "/api/v1/incidents/" + inc + "/redactions"
	for _, body := range []string{
		`{"reference":"SAR-1","plan":` + boxPlan + `}`,
		`{"reason":"sar","plan":` + boxPlan + `}`,
		`{"reason":" ","reference":"SAR-1","plan":` + boxPlan + `}`,
		`{"reason":"sar","reference":"SAR-1"}`,
		`{"reason":"sar","reference":"SAR-1","plan":null}`,
		`{"reason":"sar","reference":"SAR-1","plan":{"plan":{"Edits":[{"Kind":"mute","From":0,"To":1000}]}}}`,
		`{"reason":"sar","reference":"SAR-1","plan":{"plan":{"Edits":[{"Kind":"melt","From":0,"To":1000,"Reason":"r"}]}}}`,
		`{"reason":"sar","reference":"SAR-1","plan":{"plan":{"Edits":[{"Kind":"box","From":0,"To":1000,"Start":{"X":0.9,"Y":0,"W":0.5,"H":0.1},"End":{"X":0,"Y":0,"W":0.1,"H":0.1},"Reason":"r"}]}}}`,
		`{"reason":"sar","reference":"SAR-1","plan":{"plan":{},"extra":1}}`,
		`{"reason":"sar","reference":"SAR-1","plan":` + boxPlan + `,"extra":1}`,
		``,
	} {
		if code, msg := e.c.do(http.MethodPost, path, e.ann, "", body); code != http.StatusBadRequest {
			t.Errorf("request with %q: %d %s, want 400", body, code, msg)
		}
	}
	if code, msg := e.c.do(http.MethodPost, "/api/v1/incidents/no-such-incident/redactions", e.ann, "",
		`{"reason":"sar","reference":"SAR-1","plan":`+boxPlan+`}`); code != http.StatusNotFound {
		t.Errorf("request for an unknown incident: %d %s, want 404", code, msg)
	}
	for _, tok := range []string{e.op, e.audr} {
		if code, _ := e.c.do(http.MethodPost, path, tok, "", `{"reason":"sar","reference":"SAR-1","plan":`+boxPlan+`}`); code != http.StatusForbidden {
			t.Errorf("an operator or auditor requested a redaction: %d, want 403", code)
		}
		if code, _ := e.c.do(http.MethodPost, "/api/v1/incidents/"+inc+"/detect", tok, "", `{"reason":"sar"}`); code != http.StatusForbidden {
			t.Errorf("an operator or auditor ran detection: %d, want 403", code)
		}
	}
	if code, msg := e.c.do(http.MethodPost, "/api/v1/incidents/"+inc+"/detect", e.rev, "", `{}`); code != http.StatusBadRequest {
		t.Errorf("detection without a reason: %d %s, want 400", code, msg)
	}

	// A reviewer requests; a reviewer cannot approve, even another's.
	byRev := e.requestRedaction(t, inc, e.rev, boxPlan)
	if byRev.RequestedBy != "rita" {
		t.Fatalf("requested by %q", byRev.RequestedBy)
	}
	for _, tok := range []string{e.rev, e.op, e.audr} {
		if code, _ := e.c.do(http.MethodPost, "/api/v1/redactions/"+byRev.ID+"/approve", tok, "", ""); code != http.StatusForbidden {
			t.Errorf("a non-admin approving: %d, want 403", code)
		}
	}
	// An admin requests: the same admin approving is refused.
	x := e.requestRedaction(t, inc, e.ann, boxPlan)
	approve := "/api/v1/redactions/" + x.ID + "/approve"
	code, msg := e.c.do(http.MethodPost, approve, e.ann, "", "")
	if code != http.StatusForbidden || !strings.Contains(msg, "a second admin must approve") {
		t.Fatalf("the requester approving: %d %q, want 403", code, msg)
	}
	if got := e.redaction(t, x.ID); got.State != catalog.ExportRequested || got.ApprovedBy != "" {
		t.Fatalf("after the refused self-approval: %+v", got)
	}
	if code, _ := e.c.do(http.MethodGet, "/api/v1/redactions/"+x.ID+"/bundle", e.ann, "", ""); code != http.StatusConflict {
		t.Errorf("bundle of an unapproved redaction: %d, want 409", code)
	}
	if code, _ := e.c.do(http.MethodPost, "/api/v1/redactions/r-none/approve", e.ben, "", ""); code != http.StatusNotFound {
		t.Errorf("approving an unknown redaction: %d, want 404", code)
	}
	if code, msg := e.c.do(http.MethodPost, approve, e.ben, "", ""); code != http.StatusAccepted {
		t.Fatalf("a second admin approving: %d %s", code, msg)
	}
	if code, _ := e.c.do(http.MethodPost, approve, e.ben, "", ""); code != http.StatusConflict {
		t.Errorf("approving twice: %d, want 409", code)
	}
	done := e.redactionDone(t, x.ID)
	if done.State != catalog.ExportFailed || done.Error == "" {
		t.Fatalf("redaction of an incident with no real key: %+v, want failed", done)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(e.n.data), "exports", x.ID)); !os.IsNotExist(err) {
		t.Errorf("a failed redaction left its directory: %v", err)
	}
	want := []string{"redaction.requested by ann", "redaction.approved by ben", "redaction.failed by camvault"}
	if got := e.redactionTrail(t, x.ID); !sameStrings(got, want) {
		t.Fatalf("audit trail %q, want %q", got, want)
	}
	code, msg = e.c.do(http.MethodGet, "/api/v1/redactions", e.rev, "", "")
	var list []catalog.Redaction
	if code != http.StatusOK || json.Unmarshal([]byte(msg), &list) != nil || len(list) != 2 || list[0].ID != x.ID {
		t.Fatalf("list: %d %s", code, msg)
	}
	if code, _ := e.c.do(http.MethodGet, "/api/v1/exports", e.rev, "", ""); code != http.StatusForbidden {
		t.Errorf("a reviewer listed exports: %d, want 403", code)
	}
}

// TestRedactionBundle: a recorded incident (the test pattern: no faces)
// yields no tracks; a redaction with a box and a mute, requested by a
// reviewer and approved by an admin, renders; its tar holds the MP4, the
// signed report and the public evidence (no sealed chunks, no wrapped
// keys); the bundle verifies with the node key, and a changed report does
// not.
func TestRedactionBundle(t *testing.T) {
	clip := testClip(t)
	e := newExportStaff(t)
	e.n.publish(t, clip, 20)
	var inc string
	waitFor(t, 20*time.Second, "incident.ended in the outbox", func() bool {
		for _, a := range e.n.outbox(t) {
			if a.Type == "incident.ended" {
				inc = a.Incident
				return true
			}
		}
		return false
	})
	code, body := e.c.do(http.MethodPost, "/api/v1/incidents/"+inc+"/detect", e.rev, "", `{"reason":"subject access request SAR-2026-3"}`)
	var det struct {
		Session string
		Tracks  []json.RawMessage
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &det) != nil || det.Session == "" || len(det.Tracks) != 0 {
		t.Fatalf("detect on the test pattern: %d %.300s, want no tracks", code, body)
	}
	x := e.requestRedaction(t, inc, e.rev, boxPlan)
	if code, msg := e.c.do(http.MethodPost, "/api/v1/redactions/"+x.ID+"/approve", e.ann, "", ""); code != http.StatusAccepted {
		t.Fatalf("approve: %d %s", code, msg)
	}
	if done := e.redactionDone(t, x.ID); done.State != catalog.ExportReady {
		t.Fatalf("redaction: %+v, want ready", done)
	}
	req, _ := http.NewRequest(http.MethodGet, e.c.base+"/api/v1/redactions/"+x.ID+"/bundle", nil)
	req.Header.Set("Authorization", "Bearer "+e.rev)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("bundle: %s", resp.Status)
	}
	out := t.TempDir()
	tr := tar.NewReader(resp.Body)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, x.ID+"/")
		names = append(names, name)
		if strings.Contains(name, "/") || strings.HasPrefix(name, evidence.BundleChunks) || name == evidence.BundleKeys {
			t.Errorf("the redacted bundle carries %s", h.Name)
			continue
		}
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(filepath.Join(out, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{evidence.BundleRedactedMedia, evidence.BundleRedactionReport, evidence.BundleManifest, evidence.BundleCheckpoints, evidence.BundleInfo} {
		if fi, err := os.Stat(filepath.Join(out, n)); err != nil || fi.Size() == 0 {
			t.Errorf("bundle lacks %s: %v", n, names)
		}
	}
	pub, err := keys.LoadNodePublic(filepath.Join(e.n.data, "keys", "node.pub"))
	if err != nil {
		t.Fatal(err)
	}
	check, err := evidence.VerifyRedactedBundle(t.Context(), out, evidence.KeysOf(pub))
	if err != nil || !check.OK() {
		t.Fatalf("verify the redacted bundle: %v %v", err, check.Problems)
	}
	r := check.Report
	if r.Incident != inc || r.RequestedBy != "rita" || r.ApprovedBy != "ann" || r.Reference != "SAR-2026-3" || len(r.Chunks) == 0 || len(r.Edits) != 2 {
		t.Fatalf("report: %+v", r)
	}
	// A changed report (who approved) no longer verifies.
	p := filepath.Join(out, evidence.BundleRedactionReport)
	raw, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(raw), `"approved_by":"ann"`, `"approved_by":"bea"`, 1)), 0o600)
	if check, err := evidence.VerifyRedactedBundle(t.Context(), out, evidence.KeysOf(pub)); err != nil || check.OK() {
		t.Fatalf("a changed report verified: %v %v", err, check.Problems)
	}
	want := []string{"redaction.requested by rita", "redaction.approved by ann", "redaction.ready by camvault", "redaction.downloaded by rita"}
	if got := e.redactionTrail(t, x.ID); !sameStrings(got, want) {
		t.Fatalf("audit trail %q, want %q", got, want)
	}
}
