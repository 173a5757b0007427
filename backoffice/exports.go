package backoffice

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"camvault/catalog"
	"camvault/internal/failpoint"
)

// ExportStore keeps export requests and their two-person approval (the
// catalog); every step is audited in the same transaction as the change.
type ExportStore interface {
	RequestExport(ctx context.Context, r catalog.ExportRequest) (catalog.ExportRequest, error)
	ApproveExport(ctx context.Context, id, by string, now time.Time) (catalog.ExportRequest, error)
	FinishExport(ctx context.Context, id string, ok bool, errText string, now time.Time) error
	ExportDownloaded(ctx context.Context, id, by string, now time.Time) (catalog.ExportRequest, error)
	ExportRequest(ctx context.Context, id string) (catalog.ExportRequest, error)
	ExportRequests(ctx context.Context) ([]catalog.ExportRequest, error)
}

// ExportBundler writes an incident's export bundle (evidence.Export, with
// the backoffice identity) into dir, which must not exist yet.
type ExportBundler interface {
	Bundle(ctx context.Context, incident, dir string) error
}

// maxReference bounds a police report reference.
const maxReference = 200

// maxExportError bounds the error text kept for a failed export.
const maxExportError = 1000

func (s *Service) exportRoutes(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/exports", ActionExportRequest, s.needExports(s.serveExports))
	s.handle(mux, "GET /api/v1/exports/{id}", ActionExportRequest, s.needExports(s.serveExport))
	s.handle(mux, "POST /api/v1/incidents/{id}/exports", ActionExportRequest, s.needExports(s.serveExportRequest))
	s.handle(mux, "POST /api/v1/exports/{id}/approve", ActionExportApprove, s.needExports(s.serveExportApprove))
	s.handle(mux, "GET /api/v1/exports/{id}/bundle", ActionExportRequest, s.needExports(s.serveExportBundle))
}

// needExports answers 503 unless the store, the bundler (which holds the
// identity) and the directory for bundles are all configured.
func (s *Service) needExports(h handlerFunc) handlerFunc {
	return needs(s.cfg.Exports != nil && s.cfg.Bundler != nil && s.cfg.ExportDir != "",
		"this node has no backoffice identity or export directory: exports cannot be made here", h)
}

// serveExports is GET /api/v1/exports: every request, newest first.
func (s *Service) serveExports(w http.ResponseWriter, r *http.Request, _ Principal) {
	list, err := s.cfg.Exports.ExportRequests(r.Context())
	writeList(s, w, "exports", list, err)
}

// serveExport is GET /api/v1/exports/{id}: one request, to follow its
// state after approval.
func (s *Service) serveExport(w http.ResponseWriter, r *http.Request, _ Principal) {
	x, err := s.cfg.Exports.ExportRequest(r.Context(), r.PathValue("id"))
	if s.failed(w, err, "no such export", "export") {
		return
	}
	writeJSON(w, x)
}

type exportBody struct {
	Reason    string `json:"reason"`
	Reference string `json:"reference"`
}

// serveExportRequest is POST /api/v1/incidents/{id}/exports (JSON: reason
// and reference, the police report number): it records the request,
// which a different admin must approve before anything is decrypted.
func (s *Service) serveExportRequest(w http.ResponseWriter, r *http.Request, p Principal) {
	var body exportBody
	if !s.decode(w, r, &body, "want a JSON object with reason and reference (the police report number)") {
		return
	}
	if !checkReasonReference(w, &body.Reason, &body.Reference, "an export needs", "the police report number") {
		return
	}
	x, err := s.cfg.Exports.RequestExport(r.Context(), catalog.ExportRequest{Incident: r.PathValue("id"),
		Reason: body.Reason, Reference: body.Reference, RequestedBy: p.Name, RequestedAt: s.cfg.Now()})
	s.answerRequested(w, "export", "/api/v1/exports/"+x.ID, x, err)
}

// serveExportApprove is POST /api/v1/exports/{id}/approve: a second admin
// approves, and the bundle is written in the background; the request's
// state tells when it is ready or why it failed.
func (s *Service) serveExportApprove(w http.ResponseWriter, r *http.Request, p Principal) {
	if s.closingForApproval(w) {
		return
	}
	x, err := s.cfg.Exports.ApproveExport(r.Context(), r.PathValue("id"), p.Name, s.cfg.Now())
	s.answerApproved(w, "an", "export", x, err, func() {
		s.inBackground(func(ctx context.Context) { s.writeBundle(ctx, x) })
	})
}

func (s *Service) writeBundle(ctx context.Context, x catalog.ExportRequest) {
	s.produce(ctx, "export", x.ID, x.Incident, "backoffice.export-before-finish",
		func(ctx context.Context, dir string) error { return s.cfg.Bundler.Bundle(ctx, x.Incident, dir) },
		s.cfg.Exports.FinishExport)
}

// produce writes an approved request's bundle (write, into a new
// directory named after id) and records the outcome with finish; a
// failed write's partial bundle is removed, and the outcome is recorded
// even when shutdown cancelled the write. kind names it in logs; hit is
// the crash tests' kill point between the write and its record.
func (s *Service) produce(ctx context.Context, kind, id, incident, hit string, write func(ctx context.Context, dir string) error,
	finish func(ctx context.Context, id string, ok bool, errText string, now time.Time) error) {
	dir, err := s.bundleDir(id)
	if err == nil {
		err = os.MkdirAll(s.cfg.ExportDir, 0o700)
	}
	if err == nil {
		if err = write(ctx, dir); err != nil {
			// Half a bundle is plaintext no one can use: remove it.
			if rerr := os.RemoveAll(dir); rerr != nil {
				s.log.Error("backoffice: remove a failed "+kind+"'s partial bundle", kind, id, "dir", dir, "err", rerr)
			}
		}
	}
	errText := ""
	if err != nil {
		errText = err.Error()
		if len(errText) > maxExportError {
			errText = errText[:maxExportError] + "…"
		}
		s.log.Warn("backoffice: "+kind+" failed", kind, id, "incident", incident, "err", err)
	}
	// The bundle written (or removed), its outcome not yet in the catalog.
	failpoint.Hit(hit, id)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := finish(fctx, id, err == nil, errText, s.cfg.Now()); ferr != nil {
		s.log.Error("backoffice: record the outcome of a "+kind, kind, id, "err", ferr)
	}
}

// bundleDir is where an export's bundle lives: a directory named after
// its id under ExportDir (an id is never a path).
func (s *Service) bundleDir(id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`) {
		return "", fmt.Errorf("export id %q cannot name a directory", id)
	}
	return filepath.Join(s.cfg.ExportDir, id), nil
}

// resumeExports restarts the bundles of exports approved but not
// finished when the node last stopped (their partial bundles are
// removed first). Start calls it once the Service's context exists.
func (s *Service) resumeExports(ctx context.Context) error {
	if s.cfg.Exports == nil || s.cfg.Bundler == nil || s.cfg.ExportDir == "" {
		return nil
	}
	list, err := s.cfg.Exports.ExportRequests(ctx)
	if err != nil {
		return fmt.Errorf("resume exports: %w", err)
	}
	for _, x := range list {
		if x.State != catalog.ExportApproved {
			continue
		}
		s.restart(x.ID, func(ctx context.Context) { s.writeBundle(ctx, x) })
	}
	return nil
}

// serveExportBundle is GET /api/v1/exports/{id}/bundle: a ready export's
// bundle as a tar stream, audited as downloaded before the first byte.
func (s *Service) serveExportBundle(w http.ResponseWriter, r *http.Request, p Principal) {
	ctx, id := r.Context(), r.PathValue("id")
	x, err := s.cfg.Exports.ExportRequest(ctx, id)
	if s.failed(w, err, "no such export", "export bundle") {
		return
	}
	s.serveBundle(w, "export", x.ID, x.State, func() error {
		_, err := s.cfg.Exports.ExportDownloaded(ctx, x.ID, p.Name, s.cfg.Now())
		return err
	})
}

// serveBundle streams a ready request's bundle directory as a tar,
// after downloaded has audited it.
func (s *Service) serveBundle(w http.ResponseWriter, kind, id, state string, downloaded func() error) {
	if state != catalog.ExportReady {
		http.Error(w, fmt.Sprintf("this %s is %s, not ready", kind, state), http.StatusConflict)
		return
	}
	dir, err := s.bundleDir(id)
	if err != nil {
		s.internal(w, kind+" bundle", err)
		return
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		http.Error(w, "this "+kind+"'s bundle is no longer on disk", http.StatusGone)
		return
	}
	if err := downloaded(); errors.Is(err, catalog.ErrExportState) {
		http.Error(w, "this "+kind+" is not ready", http.StatusConflict)
		return
	} else if err != nil {
		s.internal(w, kind+" bundle", err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.tar"`, id))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := writeTar(w, dir, id); err != nil {
		s.log.Error("backoffice: stream "+kind+" bundle", kind, id, "err", err)
		// The status is sent: abort the connection, so the client sees a
		// broken download rather than a short tar that looks whole.
		panic(http.ErrAbortHandler)
	}
}

// writeTar writes the regular files under dir as a tar, named prefix/ and
// their path relative to dir. Symlinks and other special files are
// skipped, never followed.
func writeTar(w io.Writer, dir, prefix string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return addTarFile(tw, p, path.Join(prefix, filepath.ToSlash(rel)), info)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func addTarFile(tw *tar.Writer, p, name string, info fs.FileInfo) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	// What was opened must be the regular file that was walked, not a
	// symlink put in its place since.
	if fi, err := f.Stat(); err != nil || !os.SameFile(fi, info) {
		return fmt.Errorf("%s changed while being archived", name)
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: info.Size(), Mode: int64(info.Mode().Perm()), ModTime: info.ModTime(), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, info.Size()); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	return nil
}
