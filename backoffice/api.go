package backoffice

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"camvault/catalog"
)

// Route is one registered backoffice endpoint and the action it needs.
type Route struct {
	Pattern string // "METHOD /path", as net/http.ServeMux takes it
	Action  Action
	// Page is a web page: without a session it redirects to the login
	// page instead of answering 401.
	Page bool
}

type handlerFunc func(http.ResponseWriter, *http.Request, Principal)

// Routes lists every endpoint Register mounted, in order.
func (s *Service) Routes() []Route { return append([]Route(nil), s.routes...) }

// handle is the only way a backoffice endpoint is mounted: it needs an
// action from the matrix (anything else panics at start-up, so a route
// cannot exist without a rule), authenticates, checks CSRF on a
// cookie-authenticated state change, and checks the matrix.
func (s *Service) handle(mux *http.ServeMux, pattern string, action Action, h handlerFunc) {
	s.mount(mux, Route{Pattern: pattern, Action: action}, h)
}

func (s *Service) mount(mux *http.ServeMux, rt Route, h handlerFunc) {
	pattern, action := rt.Pattern, rt.Action
	if _, ok := matrix[action]; !ok {
		panic(fmt.Sprintf("backoffice: route %q has no rule in the authorisation matrix (action %q)", pattern, action))
	}
	method, _, ok := strings.Cut(pattern, " ")
	if !ok {
		panic(fmt.Sprintf("backoffice: route %q names no method", pattern))
	}
	s.routes = append(s.routes, rt)
	if action == ActionPublic {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { h(w, r, Principal{}) })
		return
	}
	changes := method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch || method == http.MethodDelete
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		who, err := s.auth.Authenticate(r)
		if errors.Is(err, ErrUnauthorized) && rt.Page {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if errors.Is(err, ErrUnauthorized) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="camvault"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		} else if err != nil {
			s.internal(w, "authenticate", err)
			return
		}
		// A session cookie is sent by the browser on its own; a bearer
		// token is not, so only cookie sessions need the CSRF token.
		if changes && who.session != "" && !csrfOK(r, who) {
			http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
			return
		}
		if !Allowed(who.Role, action) && rt.Page {
			s.forbiddenPage(w, who, action)
			return
		}
		if !Allowed(who.Role, action) {
			http.Error(w, fmt.Sprintf("role %s may not %s", who.Role, action), http.StatusForbidden)
			return
		}
		h(w, r, who)
	})
}

// staffRoutes mounts the staff API; without a staff store (a backoffice
// with only API-token files) these endpoints answer 503.
func (s *Service) staffRoutes(mux *http.ServeMux) {
	s.handle(mux, "POST /api/v1/login", ActionPublic, s.needStaff(s.serveLogin))
	s.handle(mux, "POST /api/v1/logout", ActionSession, s.needStaff(s.serveLogout))
	s.handle(mux, "GET /api/v1/session", ActionSession, s.serveSession)
	s.handle(mux, "GET /api/v1/incidents", ActionIncidentsRead, s.needStaff(s.serveIncidents))
	s.handle(mux, "GET /api/v1/audit", ActionAuditRead, s.needStaff(s.serveAudit))
	s.handle(mux, "GET /api/v1/users", ActionUsersManage, s.needStaff(s.serveUsers))
	s.handle(mux, "POST /api/v1/incidents/{id}/hold", ActionHoldPlace, s.serveHold)
	s.handle(mux, "POST /api/v1/incidents/{id}/release", ActionHoldRelease, s.serveHold)
	s.handle(mux, "GET /api/v1/incidents/{id}", ActionIncidentsRead, s.needStaff(s.serveIncident))
	s.handle(mux, "POST /api/v1/incidents/{id}/views", ActionFootageView, s.needStaff(s.needFootage(s.serveOpenView)))
	s.handle(mux, "POST /api/v1/incidents/{id}/live", ActionLiveView, s.needStaff(s.serveLive))
	s.handle(mux, "GET /api/v1/views/{view}/segments/{seq}", ActionFootageView, s.needFootage(s.serveSegment))
	s.handle(mux, "GET /api/v1/cameras", ActionCamerasManage, s.needCameras(s.serveCameras))
	s.handle(mux, "POST /api/v1/cameras/{id}/revoke", ActionCamerasManage, s.needCameras(s.serveCameraChange))
	s.handle(mux, "POST /api/v1/cameras/{id}/rotate", ActionCamerasManage, s.needCameras(s.serveCameraChange))
	s.handle(mux, "POST /api/v1/users/{name}/disable", ActionUsersManage, s.needStaff(s.serveUserDisable))
	s.exportRoutes(mux)
	s.redactionRoutes(mux)
}

func (s *Service) needStaff(h handlerFunc) handlerFunc {
	return needs(s.staff != nil, "no staff store configured", h)
}

// writeList answers a list as JSON, [] rather than null when it is
// empty (clients always get an array), or the error that reading it gave.
func writeList[T any](s *Service, w http.ResponseWriter, what string, list []T, err error) {
	if err != nil {
		s.internal(w, what, err)
		return
	}
	if list == nil {
		list = []T{}
	}
	writeJSON(w, list)
}

// failed answers a lookup's error, if there is one: 404 with notFound
// when the row does not exist, 500 for anything else. It reports whether
// it answered.
func (s *Service) failed(w http.ResponseWriter, err error, notFound, what string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, catalog.ErrNotFound):
		http.Error(w, notFound, http.StatusNotFound)
	default:
		s.internal(w, what, err)
	}
	return true
}

// needs is h when the service has what h needs (its configuration is
// fixed by New, before routes are mounted), else a 503 saying why.
func needs(have bool, why string, h handlerFunc) handlerFunc {
	if have {
		return h
	}
	return func(w http.ResponseWriter, _ *http.Request, _ Principal) {
		http.Error(w, why, http.StatusServiceUnavailable)
	}
}

func (s *Service) serveIncidents(w http.ResponseWriter, r *http.Request, _ Principal) {
	inc, err := s.staff.Incidents(r.Context())
	writeList(s, w, "incidents", inc, err)
}

// serveAudit is GET /api/v1/audit: the records exactly as stored (and
// hashed), so a client can check the chain itself; ?format=csv gives a
// spreadsheet of them.
func (s *Service) serveAudit(w http.ResponseWriter, r *http.Request, _ Principal) {
	switch r.URL.Query().Get("format") {
	case "csv":
		s.auditCSV(w, r)
		return
	case "", "json":
	default:
		http.Error(w, "format is json or csv", http.StatusBadRequest)
		return
	}
	lines, err := s.staff.AuditLines(r.Context())
	if err != nil {
		s.internal(w, "audit", err)
		return
	}
	out := make([]json.RawMessage, len(lines))
	for i, l := range lines {
		out[i] = l
	}
	writeJSON(w, out)
}

func (s *Service) serveUsers(w http.ResponseWriter, r *http.Request, _ Principal) {
	users, err := s.staff.StaffList(r.Context())
	writeList(s, w, "users", users, err)
}

type holdRequest struct {
	Reason    string `json:"reason"`
	Reference string `json:"reference"`
}

// serveHold is POST /api/v1/incidents/{id}/hold and .../release (JSON:
// reason, and reference when placing).
func (s *Service) serveHold(w http.ResponseWriter, r *http.Request, p Principal) {
	if s.holds == nil {
		http.Error(w, "no chunk store for holds", http.StatusServiceUnavailable)
		return
	}
	var req holdRequest
	if !s.decode(w, r, &req, "want a JSON body with reason and reference") {
		return
	}
	id, place := r.PathValue("id"), strings.HasSuffix(r.URL.Path, "/hold")
	if req.Reason == "" || place && req.Reference == "" {
		http.Error(w, "a hold needs a reason and a reference (police report number); a release a reason", http.StatusBadRequest)
		return
	}
	var err error
	if place {
		err = s.holds.PlaceHold(r.Context(), catalog.Hold{Incident: id, Reason: req.Reason, Reference: req.Reference, PlacedBy: p.Name, PlacedAt: s.cfg.Now()})
	} else {
		err = s.holds.ReleaseHold(r.Context(), id, p.Name, req.Reason, s.cfg.Now())
	}
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		http.Error(w, "no such incident", http.StatusNotFound)
	case errors.Is(err, catalog.ErrHeld), errors.Is(err, catalog.ErrNotHeld):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		s.internal(w, "hold", err)
	default:
		writeJSON(w, map[string]string{"incident": id})
	}
}
