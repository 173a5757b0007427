package backoffice_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/backoffice"
	"camvault/catalog"
	"camvault/evidence"
)

// exportStaff is a node with two admins (ann requests, ben approves) and
// one account of each other role.
type exportStaff struct {
	n                       *node
	c                       *client
	ann, ben, op, rev, audr string
}

func newExportStaff(t *testing.T) *exportStaff {
	t.Helper()
	n := startNode(t, dataDir(t), "", backoffice.Config{})
	return &exportStaff{n: n, c: newClient(t, n),
		ann: addStaff(t, n, "ann", backoffice.RoleAdmin), ben: addStaff(t, n, "ben", backoffice.RoleAdmin),
		op: addStaff(t, n, "olga", backoffice.RoleOperator), rev: addStaff(t, n, "rita", backoffice.RoleReviewer),
		audr: addStaff(t, n, "audrey", backoffice.RoleAuditor)}
}

// request asks for an export of incident as tok and returns it.
func (e *exportStaff) request(t *testing.T, incident, tok string) catalog.ExportRequest {
	t.Helper()
	code, body := e.c.do(http.MethodPost, "/api/v1/incidents/"+incident+"/exports", tok, "", `{"reason":"court case","reference":"PR-2026-17"}`)
	if code != http.StatusCreated {
		t.Fatalf("request export: %d %s", code, body)
	}
	var x catalog.ExportRequest
	if err := json.Unmarshal([]byte(body), &x); err != nil {
		t.Fatal(err)
	}
	if x.ID == "" || x.State != catalog.ExportRequested || x.RequestedBy != "ann" || x.Incident != incident || x.Reference != "PR-2026-17" {
		t.Fatalf("new export request: %+v", x)
	}
	return x
}

func (e *exportStaff) get(t *testing.T, id string) catalog.ExportRequest {
	t.Helper()
	code, body := e.c.do(http.MethodGet, "/api/v1/exports/"+id, e.ann, "", "")
	if code != http.StatusOK {
		t.Fatalf("get export: %d %s", code, body)
	}
	var x catalog.ExportRequest
	if err := json.Unmarshal([]byte(body), &x); err != nil {
		t.Fatal(err)
	}
	return x
}

// finished waits for the bundle to be written or to fail.
func (e *exportStaff) finished(t *testing.T, id string) catalog.ExportRequest {
	t.Helper()
	var x catalog.ExportRequest
	waitFor(t, 60*time.Second, "the export to finish", func() bool {
		x = e.get(t, id)
		return x.State == catalog.ExportReady || x.State == catalog.ExportFailed
	})
	return x
}

// trail returns "action by actor" for each audit record of export id, as
// an auditor reads them.
func (e *exportStaff) trail(t *testing.T, id string) []string {
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
		if r.Details["export"] == id {
			out = append(out, r.Action+" by "+r.Actor)
		}
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestExportTwoPersonRule: an export request needs a reason and a
// reference and a known incident; its requester, and anyone not an
// admin, cannot approve it, and a refused approval changes nothing; a
// second admin's approval is accepted once. The incident's key is not a
// real wrapped key, so writing the bundle fails: the request says failed
// with why, no partial bundle is left, no bundle is served, and the audit
// trail holds each step with its actor.
func TestExportTwoPersonRule(t *testing.T) {
	e := newExportStaff(t)
	inc := newIncident(t, e.n)
	path := "/api/v1/incidents/" + inc + "/exports"
	for _, body := range []string{
		`{"reason":"court case"}`,
		`{"reference":"PR-1"}`,
		`{"reason":"  ","reference":"PR-1"}`,
		`{"reason":"court case","reference":"PR-1","extra":1}`,
		`{"reason":"court case","reference":"PR-1"}{}`,
		`reason=court`,
		``,
	} {
		if code, msg := e.c.do(http.MethodPost, path, e.ann, "", body); code != http.StatusBadRequest {
			t.Errorf("request with %q: %d %s, want 400", body, code, msg)
		}
	}
	if code, msg := e.c.do(http.MethodPost, "/api/v1/incidents/no-such-incident/exports", e.ann, "", `{"reason":"r","reference":"PR-1"}`); code != http.StatusNotFound {
		t.Errorf("request for an unknown incident: %d %s, want 404", code, msg)
	}
	if code, _ := e.c.do(http.MethodPost, path, e.rev, "", `{"reason":"r","reference":"PR-1"}`); code != http.StatusForbidden {
		t.Errorf("a reviewer requested an export: %d, want 403", code)
	}

	x := e.request(t, inc, e.ann)
	approve := "/api/v1/exports/" + x.ID + "/approve"
	code, msg := e.c.do(http.MethodPost, approve, e.ann, "", "")
	if code != http.StatusForbidden || !strings.Contains(msg, "a second admin must approve") {
		t.Fatalf("the requester approving: %d %q, want 403 saying a second admin must approve", code, msg)
	}
	for _, tok := range []string{e.op, e.rev, e.audr} {
		if code, msg := e.c.do(http.MethodPost, approve, tok, "", ""); code != http.StatusForbidden {
			t.Errorf("a non-admin approving: %d %s, want 403", code, msg)
		}
	}
	if got := e.get(t, x.ID); got.State != catalog.ExportRequested || got.ApprovedBy != "" {
		t.Fatalf("after refused approvals: %+v", got)
	}
	if code, _ := e.c.do(http.MethodPost, "/api/v1/exports/x-none/approve", e.ben, "", ""); code != http.StatusNotFound {
		t.Errorf("approving an unknown export: %d, want 404", code)
	}
	if code, _ := e.c.do(http.MethodGet, "/api/v1/exports/"+x.ID+"/bundle", e.ann, "", ""); code != http.StatusConflict {
		t.Errorf("bundle of an unapproved export: %d, want 409", code)
	}

	code, msg = e.c.do(http.MethodPost, approve, e.ben, "", "")
	if code != http.StatusAccepted {
		t.Fatalf("a second admin approving: %d %s, want 202", code, msg)
	}
	var a catalog.ExportRequest
	if err := json.Unmarshal([]byte(msg), &a); err != nil || a.ApprovedBy != "ben" || a.State != catalog.ExportApproved {
		t.Fatalf("approval answer %s (%v)", msg, err)
	}
	if code, _ := e.c.do(http.MethodPost, approve, e.ben, "", ""); code != http.StatusConflict {
		t.Errorf("approving twice: %d, want 409", code)
	}
	done := e.finished(t, x.ID)
	if done.State != catalog.ExportFailed || done.Error == "" || done.FinishedAt == nil || done.ApprovedBy != "ben" {
		t.Fatalf("export of an incident with no real key: %+v, want failed with its error", done)
	}
	exportDir := filepath.Join(filepath.Dir(e.n.data), "exports")
	if _, err := os.Lstat(filepath.Join(exportDir, x.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed export left its directory behind: %v", err)
	}
	if code, _ := e.c.do(http.MethodGet, "/api/v1/exports/"+x.ID+"/bundle", e.ann, "", ""); code != http.StatusConflict {
		t.Errorf("bundle of a failed export: %d, want 409", code)
	}
	if code, _ := e.c.do(http.MethodGet, "/api/v1/exports/x-none/bundle", e.ann, "", ""); code != http.StatusNotFound {
		t.Errorf("bundle of an unknown export: %d, want 404", code)
	}
	code, msg = e.c.do(http.MethodGet, "/api/v1/exports", e.ben, "", "")
	var list []catalog.ExportRequest
	if code != http.StatusOK || json.Unmarshal([]byte(msg), &list) != nil || len(list) != 1 || list[0].ID != x.ID || list[0].State != catalog.ExportFailed {
		t.Fatalf("list: %d %s", code, msg)
	}
	want := []string{"export.requested by ann", "export.approved by ben", "export.failed by camvault"}
	if got := e.trail(t, x.ID); !sameStrings(got, want) {
		t.Fatalf("audit trail %q, want %q", got, want)
	}
}

// TestExportBundle: a recorded incident, requested by one admin and
// approved by another, becomes ready; its bundle downloads as a tar of
// `camvault export`'s files under the export's id (relative paths,
// regular files only), written into an owner-only directory outside the
// data directory; the download is audited.
func TestExportBundle(t *testing.T) {
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
	x := e.request(t, inc, e.ann)
	if code, msg := e.c.do(http.MethodPost, "/api/v1/exports/"+x.ID+"/approve", e.ben, "", ""); code != http.StatusAccepted {
		t.Fatalf("approve: %d %s", code, msg)
	}
	if done := e.finished(t, x.ID); done.State != catalog.ExportReady || done.Error != "" {
		t.Fatalf("export of a recorded incident: %+v, want ready", done)
	}
	exportDir := filepath.Join(filepath.Dir(e.n.data), "exports")
	if fi, err := os.Stat(exportDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("export directory: %v %v, want mode 0700", fi, err)
	}

	req, _ := http.NewRequest(http.MethodGet, e.c.base+"/api/v1/exports/"+x.ID+"/bundle", nil)
	req.Header.Set("Authorization", "Bearer "+e.ann)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-tar" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("bundle: %s, %q, %q", resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"))
	}
	got := map[string]int64{}
	tr := tar.NewReader(resp.Body)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasPrefix(h.Name, x.ID+"/") || strings.Contains(h.Name, "..") {
			t.Errorf("tar entry %q type %c", h.Name, h.Typeflag)
		}
		n, err := io.Copy(io.Discard, tr)
		if err != nil || n != h.Size {
			t.Errorf("tar entry %q: %d of %d bytes, %v", h.Name, n, h.Size, err)
		}
		got[strings.TrimPrefix(h.Name, x.ID+"/")] = h.Size
	}
	for _, name := range []string{evidence.BundleManifest, evidence.BundleCheckpoints, evidence.BundleKeys, evidence.BundleInfo,
		evidence.BundleReport, evidence.MediaFileName(0, 1, evidence.ContainerFMP4)} {
		if got[name] == 0 {
			t.Errorf("bundle lacks %s (or it is empty); it has %v", name, got)
		}
	}
	chunks := 0
	for name := range got {
		if strings.HasPrefix(name, evidence.BundleChunks+"/") {
			chunks++
		}
	}
	if chunks == 0 {
		t.Errorf("bundle has no sealed chunks: %v", got)
	}
	want := []string{"export.requested by ann", "export.approved by ben", "export.ready by camvault", "export.downloaded by ann"}
	if got := e.trail(t, x.ID); !sameStrings(got, want) {
		t.Fatalf("audit trail %q, want %q", got, want)
	}
}

// fakeBundler writes a small bundle with a symlink in it, or, when block
// is set, waits for its context to end.
type fakeBundler struct {
	block   bool
	started chan struct{}
}

func (f *fakeBundler) Bundle(ctx context.Context, incident, dir string) error {
	if f.block {
		close(f.started)
		<-ctx.Done()
		return ctx.Err()
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b.txt"), []byte("beta!"), 0o600); err != nil {
		return err
	}
	return os.Symlink("/etc/passwd", filepath.Join(dir, "link"))
}

// fakeExportService is a started Service over a fresh catalog with one
// incident and two admin tokens (ann: tokAlice, ben: tokCarol), with the
// catalog as its export store when store is set, and b and dir.
func fakeExportService(t *testing.T, store bool, b backoffice.ExportBundler, dir string) (*backoffice.Service, *catalog.Catalog, string, string) {
	t.Helper()
	cat, err := catalog.Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	ctx := context.Background()
	if err := cat.AddCamera(ctx, catalog.Camera{ID: camID, Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st, err := cat.StartSession(ctx, catalog.SessionStart{Camera: camID, Officer: "o", Session: "s1", WrappedKey: []byte("k"), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := backoffice.ParseTokens(strings.NewReader("ann admin " + tokAlice + "\nben admin " + tokCarol + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := backoffice.Config{Auth: tk, Bundler: b, ExportDir: dir}
	if store {
		cfg.Exports = cat
	}
	svc, err := backoffice.New(cfg, cat, nil, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	mux := http.NewServeMux()
	svc.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return svc, cat, hs.URL, st.Incident
}

func send(t *testing.T, method, url, tok, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestExportsNeedConfig: without the store, the bundler or the export
// directory every export endpoint answers 503.
func TestExportsNeedConfig(t *testing.T) {
	for name, c := range map[string]struct {
		store bool
		b     backoffice.ExportBundler
		dir   string
	}{
		"no store":     {false, &fakeBundler{}, t.TempDir()},
		"no bundler":   {true, nil, t.TempDir()},
		"no directory": {true, &fakeBundler{}, ""},
	} {
		_, _, base, inc := fakeExportService(t, c.store, c.b, c.dir)
		for _, rt := range [][2]string{{"GET", "/api/v1/exports"}, {"GET", "/api/v1/exports/x"}, {"POST", "/api/v1/incidents/" + inc + "/exports"},
			{"POST", "/api/v1/exports/x/approve"}, {"GET", "/api/v1/exports/x/bundle"}} {
			if code, msg := send(t, rt[0], base+rt[1], tokAlice, `{"reason":"r","reference":"PR-1"}`); code != http.StatusServiceUnavailable {
				t.Errorf("%s: %s %s: %d %s, want 503", name, rt[0], rt[1], code, msg)
			}
		}
	}
}

// TestExportTarSkipsSymlinks: the bundle's tar holds the regular files
// with paths relative to the bundle, and never what a symlink in it
// points to.
func TestExportTarSkipsSymlinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exports")
	_, cat, base, inc := fakeExportService(t, true, &fakeBundler{}, dir)
	code, body := send(t, http.MethodPost, base+"/api/v1/incidents/"+inc+"/exports", tokAlice, `{"reason":"r","reference":"PR-1"}`)
	var x catalog.ExportRequest
	if code != http.StatusCreated || json.Unmarshal(body, &x) != nil {
		t.Fatalf("request: %d %s", code, body)
	}
	if code, body := send(t, http.MethodPost, base+"/api/v1/exports/"+x.ID+"/approve", tokCarol, ""); code != http.StatusAccepted {
		t.Fatalf("approve: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "ready", func() bool {
		got, err := cat.ExportRequest(context.Background(), x.ID)
		return err == nil && got.State == catalog.ExportReady
	})
	code, body = send(t, http.MethodGet, base+"/api/v1/exports/"+x.ID+"/bundle", tokCarol, "")
	if code != http.StatusOK {
		t.Fatalf("bundle: %d %s", code, body)
	}
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(body))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[h.Name] = string(b)
	}
	want := map[string]string{x.ID + "/a.txt": "alpha", x.ID + "/sub/b.txt": "beta!"}
	if len(got) != len(want) || got[x.ID+"/a.txt"] != "alpha" || got[x.ID+"/sub/b.txt"] != "beta!" {
		t.Fatalf("tar holds %q, want %q", got, want)
	}
}

// TestExportCloseRecordsOutcome: Close cancels a bundle being written and
// waits for it, and the export is recorded as failed, not left approved.
func TestExportCloseRecordsOutcome(t *testing.T) {
	fb := &fakeBundler{block: true, started: make(chan struct{})}
	svc, cat, base, inc := fakeExportService(t, true, fb, filepath.Join(t.TempDir(), "exports"))
	code, body := send(t, http.MethodPost, base+"/api/v1/incidents/"+inc+"/exports", tokAlice, `{"reason":"r","reference":"PR-1"}`)
	var x catalog.ExportRequest
	if code != http.StatusCreated || json.Unmarshal(body, &x) != nil {
		t.Fatalf("request: %d %s", code, body)
	}
	if code, body := send(t, http.MethodPost, base+"/api/v1/exports/"+x.ID+"/approve", tokCarol, ""); code != http.StatusAccepted {
		t.Fatalf("approve: %d %s", code, body)
	}
	select {
	case <-fb.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the bundle was never started")
	}
	svc.Close()
	got, err := cat.ExportRequest(context.Background(), x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != catalog.ExportFailed || !strings.Contains(got.Error, "context canceled") {
		t.Fatalf("after Close: %+v, want failed (cancelled)", got)
	}
}

// TestExportResumedAfterRestart: an export approved when the node stopped
// (its bundle never written) is bundled at the next start, and its partial
// directory is removed first.
func TestExportResumedAfterRestart(t *testing.T) {
	data := dataDir(t)
	n := startNode(t, data, "", backoffice.Config{})
	inc := newIncident(t, n) // a fake wrapped key: the bundle fails verification
	ctx, now := context.Background(), time.Now()
	x, err := n.srv.Catalog.RequestExport(ctx, catalog.ExportRequest{Incident: inc, Reason: "court", Reference: "PR-9", RequestedBy: "ann", RequestedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.srv.Catalog.ApproveExport(ctx, x.ID, "ben", now); err != nil {
		t.Fatal(err)
	}
	secret := n.secret
	n.close(t)
	partial := filepath.Join(filepath.Dir(data), "exports", x.ID)
	if err := os.MkdirAll(partial, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(partial, "half.mp4"), []byte("partial"), 0o600)

	n2 := startNode(t, data, secret, backoffice.Config{})
	var got catalog.ExportRequest
	waitFor(t, 20*time.Second, "the approved export to be resumed", func() bool {
		got, err = n2.srv.Catalog.ExportRequest(ctx, x.ID)
		return err == nil && got.State != catalog.ExportApproved
	})
	if got.State != catalog.ExportFailed || got.Error == "" {
		t.Fatalf("resumed export: %+v, want failed with the reason", got)
	}
	if _, err := os.Stat(filepath.Join(partial, "half.mp4")); err == nil {
		t.Fatal("the partial bundle of the stopped export is still there")
	}
}
