package backoffice

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"camvault/catalog"
)

// CameraAdmin lists cameras and revokes or rotates their credentials
// (the catalog, with the pepper that camera secrets are stored under).
type CameraAdmin interface {
	Cameras(ctx context.Context) ([]catalog.CameraInfo, error)
	RevokeCamera(ctx context.Context, id, by string, now time.Time) error
	// RotateCamera gives the camera a new secret, returned to be shown
	// once.
	RotateCamera(ctx context.Context, id, by string, now time.Time) (string, error)
}

func (s *Service) needCameras(h handlerFunc) handlerFunc {
	return needs(s.cfg.Cameras != nil, "no camera registry configured", h)
}

func (s *Service) serveCameras(w http.ResponseWriter, r *http.Request, _ Principal) {
	cams, err := s.cfg.Cameras.Cameras(r.Context())
	writeList(s, w, "cameras", cams, err)
}

// serveCameraChange is POST /api/v1/cameras/{id}/revoke and .../rotate;
// rotate answers the new secret, shown this once.
func (s *Service) serveCameraChange(w http.ResponseWriter, r *http.Request, p Principal) {
	id, now := r.PathValue("id"), s.cfg.Now()
	var err error
	out := map[string]string{"camera": id}
	if r.URL.Path[len(r.URL.Path)-len("/rotate"):] == "/rotate" {
		var secret string
		secret, err = s.cfg.Cameras.RotateCamera(r.Context(), id, p.Name, now)
		out["secret"] = secret
	} else {
		err = s.cfg.Cameras.RevokeCamera(r.Context(), id, p.Name, now)
	}
	if s.failed(w, err, "no such camera (or already revoked)", "camera change") {
		return
	}
	writeJSON(w, out)
}

// serveUserDisable is POST /api/v1/users/{name}/disable: the account's
// sessions end at once and its tokens stop working.
func (s *Service) serveUserDisable(w http.ResponseWriter, r *http.Request, p Principal) {
	name := r.PathValue("name")
	if name == p.Name {
		http.Error(w, "an admin cannot disable their own account", http.StatusConflict)
		return
	}
	err := s.staff.DisableStaff(r.Context(), name, p.Name, s.cfg.Now())
	if s.failed(w, err, "no such user", "disable user") {
		return
	}
	writeJSON(w, map[string]string{"user": name})
}

// auditCSV writes the audit trail as CSV, one record per row with its
// chain hash, for a spreadsheet; the JSON form is what a verifier checks.
func (s *Service) auditCSV(w http.ResponseWriter, r *http.Request) {
	rows, err := s.staff.AuditRows(r.Context())
	if err != nil {
		s.internal(w, "audit", err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="camvault-audit.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "at", "actor", "action", "incident", "details", "prev", "hash"})
	for _, row := range rows {
		var rec catalog.AuditRecord
		if err := json.Unmarshal(row.Line, &rec); err != nil {
			s.log.Error("audit row does not parse", "id", row.ID, "err", err)
			cw.Write([]string{strconv.FormatUint(row.ID, 10), "", "", "unparseable", "", string(row.Line), "", row.Hash})
			continue
		}
		details := ""
		if len(rec.Details) > 0 {
			b, _ := json.Marshal(rec.Details)
			details = string(b)
		}
		cw.Write([]string{strconv.FormatUint(row.ID, 10), rec.At.Format(time.RFC3339Nano), csvSafe(rec.Actor), rec.Action,
			rec.Incident, csvSafe(details), rec.Prev, row.Hash})
	}
	cw.Flush()
}

// csvSafe keeps a cell that a spreadsheet would run as a formula (a name
// or reason typed by someone) as text.
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}
