package backoffice

import (
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"camvault/catalog"
)

// The web UI: server-rendered pages and one small script, all embedded.
// Pages are mounted through the same authorisation matrix as the API;
// everything a page changes goes through the JSON API with the session's
// CSRF token.
//
//go:embed web/templates/*.html
var templateFS embed.FS

//go:embed web/static
var staticFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"ts":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur": func(startNS, endNS int64) string {
		return time.Duration(endNS - startNS).Round(100 * time.Millisecond).String()
	},
	"deref": func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	},
}).ParseFS(templateFS, "web/templates/*.html"))

// page is what every template gets.
type page struct {
	Title string
	Who   Principal
	CSRF  string
	Nav   []navItem
	May   map[string]bool
	// Live: this person may watch a recording camera here (the node has
	// --live-view and the role has live.view); the Live page offers
	// "watch" and the player only then.
	Live bool
	Data any
}

type navItem struct {
	Path, Label string
}

// nav lists the pages a role may open, in menu order.
var nav = []struct {
	navItem
	action Action
}{
	{navItem{"/", "Live"}, ActionAlertsRead},
	{navItem{"/cameras", "Cameras"}, ActionCamerasManage},
	{navItem{"/staff", "Staff"}, ActionUsersManage},
	{navItem{"/audit", "Audit trail"}, ActionAuditRead},
}

func (s *Service) uiRoutes(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "web/static")
	files := http.FileServerFS(static)
	s.handle(mux, "GET /static/", ActionPublic, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // files only, no listings
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.StripPrefix("/static/", files).ServeHTTP(w, r)
	})
	s.handle(mux, "GET /login", ActionPublic, func(w http.ResponseWriter, r *http.Request, _ Principal) {
		s.render(w, "login.html", page{Title: "Sign in"})
	})
	s.pageRoute(mux, "GET /{$}", ActionAlertsRead, s.pageHome)
	s.pageRoute(mux, "GET /incidents/{id}", ActionIncidentsRead, s.needStaff(s.pageIncident))
	s.pageRoute(mux, "GET /cameras", ActionCamerasManage, s.needCameras(s.pageCameras))
	s.pageRoute(mux, "GET /staff", ActionUsersManage, s.needStaff(s.pageStaff))
	s.pageRoute(mux, "GET /audit", ActionAuditRead, s.needStaff(s.pageAudit))
}

func (s *Service) pageRoute(mux *http.ServeMux, pattern string, action Action, h handlerFunc) {
	s.mount(mux, Route{Pattern: pattern, Action: action, Page: true}, h)
}

func (s *Service) newPage(title string, p Principal, data any) page {
	pg := page{Title: title, Who: p, CSRF: p.csrf, May: map[string]bool{}, Data: data}
	for _, a := range Actions() {
		pg.May[string(a)] = Allowed(p.Role, a)
	}
	for _, n := range nav {
		if Allowed(p.Role, n.action) {
			pg.Nav = append(pg.Nav, n.navItem)
		}
	}
	return pg
}

// render writes a page with headers that keep it from being framed,
// sniffed or made to run anything but our own script.
// connect names origins beyond 'self' the page's script may call (the
// ingest node's WHEP endpoint, for the live view).
func (s *Service) render(w http.ResponseWriter, name string, pg page, connect ...string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "+
		"media-src 'self' blob:; connect-src "+strings.Join(append([]string{"'self'"}, connect...), " ")+"; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if err := pages.ExecuteTemplate(w, name, pg); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

func (s *Service) forbiddenPage(w http.ResponseWriter, p Principal, action Action) {
	w.WriteHeader(http.StatusForbidden)
	s.render(w, "forbidden.html", s.newPage("Not allowed", p, action))
}

func (s *Service) pageHome(w http.ResponseWriter, r *http.Request, p Principal) {
	feed, err := s.recent(r.Context(), p.Role, recentAlerts)
	if err != nil {
		s.internal(w, "live page", err)
		return
	}
	pg := s.newPage("Live", p, feed)
	pg.Live = s.cfg.Live != nil && Allowed(p.Role, ActionLiveView)
	s.render(w, "home.html", pg, s.liveOrigins(r, p)...)
}

// liveOrigins is the WHEP endpoint's origin, for a page of someone who
// may watch live.
func (s *Service) liveOrigins(r *http.Request, p Principal) []string {
	if s.cfg.Live == nil || !Allowed(p.Role, ActionLiveView) {
		return nil
	}
	u, err := url.Parse(s.cfg.Live.URL(r, "x"))
	if err != nil || u.Host == "" || strings.ContainsAny(u.Host, " ;'") {
		return nil
	}
	return []string{u.Scheme + "://" + u.Host}
}

func (s *Service) pageIncident(w http.ResponseWriter, r *http.Request, p Principal) {
	d, err := s.incidentDetail(r.Context(), r.PathValue("id"))
	if s.failed(w, err, "no such incident", "incident page") {
		return
	}
	s.render(w, "incident.html", s.newPage("Incident "+d.ID, p, d))
}

func (s *Service) pageCameras(w http.ResponseWriter, r *http.Request, p Principal) {
	cams, err := s.cfg.Cameras.Cameras(r.Context())
	if err != nil {
		s.internal(w, "cameras page", err)
		return
	}
	s.render(w, "cameras.html", s.newPage("Cameras", p, cams))
}

func (s *Service) pageStaff(w http.ResponseWriter, r *http.Request, p Principal) {
	users, err := s.staff.StaffList(r.Context())
	if err != nil {
		s.internal(w, "staff page", err)
		return
	}
	s.render(w, "staff.html", s.newPage("Staff", p, users))
}

// auditEntry is one audit record as the auditor's page shows it.
type auditEntry struct {
	ID   uint64
	Rec  catalog.AuditRecord
	Hash string
}

func (s *Service) pageAudit(w http.ResponseWriter, r *http.Request, p Principal) {
	rows, err := s.staff.AuditRows(r.Context())
	if err != nil {
		s.internal(w, "audit page", err)
		return
	}
	out := make([]auditEntry, 0, len(rows))
	for i := len(rows) - 1; i >= 0; i-- { // newest first
		e := auditEntry{ID: rows[i].ID, Hash: rows[i].Hash}
		if err := json.Unmarshal(rows[i].Line, &e.Rec); err != nil {
			e.Rec.Action = "unparseable record"
		}
		out = append(out, e)
	}
	s.render(w, "audit.html", s.newPage("Audit trail", p, out))
}
