package backoffice

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"camvault/catalog"
)

// SessionCookie is the name of the login session's cookie.
const SessionCookie = "camvault_session"

// StaffStore is what staff authentication and the JSON API need of the
// catalog.
type StaffStore interface {
	Staff(ctx context.Context, name string) (catalog.StaffUser, error)
	StaffList(ctx context.Context) ([]catalog.StaffUser, error)
	StaffByToken(ctx context.Context, digest []byte) (catalog.StaffUser, error)
	AddStaffSession(ctx context.Context, digest []byte, name, csrf string, now time.Time) error
	StaffBySession(ctx context.Context, digest []byte, now time.Time, idle, absolute time.Duration) (catalog.StaffUser, string, error)
	EndStaffSession(ctx context.Context, digest []byte) error
	PruneStaffSessions(ctx context.Context, now time.Time, idle, absolute time.Duration) (int64, error)
	AddAudit(ctx context.Context, at time.Time, actor, action, incident string, details map[string]any) error
	Incidents(ctx context.Context) ([]catalog.Incident, error)
	Incident(ctx context.Context, id string) (catalog.Incident, error)
	ActiveHold(ctx context.Context, incident string) (*catalog.Hold, error)
	ManifestLines(ctx context.Context, incident string) ([][]byte, error)
	AuditLines(ctx context.Context) ([][]byte, error)
	AuditRows(ctx context.Context) ([]catalog.AuditRow, error)
	DisableStaff(ctx context.Context, name, by string, now time.Time) error
}

// Holds places and releases legal holds (the catalog and the chunk
// store's object locks together: storage/retention).
type Holds interface {
	PlaceHold(ctx context.Context, h catalog.Hold) error
	ReleaseHold(ctx context.Context, incident, by, reason string, now time.Time) error
}

// staffAuth authenticates staff API tokens and session cookies against
// the catalog on every request, so disabling a user or revoking a token
// takes effect at once.
type staffAuth struct {
	store          StaffStore
	now            func() time.Time
	idle, absolute time.Duration
}

func (a *staffAuth) Authenticate(r *http.Request) (Principal, error) {
	if tok, ok := bearer(r); ok {
		d := Digest(tok)
		u, err := a.store.StaffByToken(r.Context(), d)
		if errors.Is(err, catalog.ErrNotFound) {
			return Principal{}, ErrUnauthorized
		} else if err != nil {
			return Principal{}, err
		}
		return principal(u)
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, ErrUnauthorized
	}
	d := Digest(c.Value)
	u, csrf, err := a.store.StaffBySession(r.Context(), d, a.now(), a.idle, a.absolute)
	if errors.Is(err, catalog.ErrNotFound) {
		return Principal{}, ErrUnauthorized
	} else if err != nil {
		return Principal{}, err
	}
	p, err := principal(u)
	p.csrf, p.session = csrf, hex.EncodeToString(d)
	return p, err
}

func principal(u catalog.StaffUser) (Principal, error) {
	role, err := ParseRole(u.Role)
	if err != nil || u.Disabled {
		return Principal{}, ErrUnauthorized
	}
	return Principal{Name: u.Name, Role: role}, nil
}

// chain tries each authorizer in turn; the first that knows the
// credentials answers.
type chain []Authorizer

func (c chain) Authenticate(r *http.Request) (Principal, error) {
	for _, a := range c {
		p, err := a.Authenticate(r)
		if !errors.Is(err, ErrUnauthorized) {
			return p, err
		}
	}
	return Principal{}, ErrUnauthorized
}

// limiter keeps one token bucket per key (user name, remote address).
type limiter struct {
	mu      sync.Mutex
	every   time.Duration
	burst   int
	buckets map[string]*rate.Limiter
}

// maxBuckets bounds the limiter's memory under a flood of names; when it
// is reached the buckets start over, which only ever lets a few more
// attempts through.
const maxBuckets = 10000

func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil || len(l.buckets) >= maxBuckets {
		l.buckets = map[string]*rate.Limiter{}
	}
	b := l.buckets[key]
	if b == nil {
		b = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.buckets[key] = b
	}
	return b.AllowN(now, 1)
}

// dummyHash is verified against when the user does not exist, so a
// login's duration does not tell which names are accounts.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("not a password of anyone")
	return h
})

type credentials struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// maxBody bounds the JSON bodies the API reads.
const maxBody = 64 << 10

func readCredentials(r *http.Request) (credentials, error) {
	var c credentials
	r.Body = http.MaxBytesReader(nil, r.Body, maxBody)
	if isJSON(r) {
		err := json.NewDecoder(r.Body).Decode(&c)
		return c, err
	}
	if err := r.ParseForm(); err != nil {
		return c, err
	}
	return credentials{Name: r.PostForm.Get("name"), Password: r.PostForm.Get("password")}, nil
}

func isJSON(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/json"
}

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

type sessionInfo struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	CSRF string `json:"csrf,omitempty"`
}

// serveLogin is POST /api/v1/login (JSON or form: name, password). It
// answers the session cookie and, in JSON, the session's CSRF token.
func (s *Service) serveLogin(w http.ResponseWriter, r *http.Request, _ Principal) {
	c, err := readCredentials(r)
	if err != nil || c.Name == "" || c.Password == "" {
		http.Error(w, "login needs name and password", http.StatusBadRequest)
		return
	}
	if len(c.Name) > 128 {
		c.Name = c.Name[:128]
	}
	now, remote := s.cfg.Now(), remoteHost(r)
	// Both buckets are charged, so one cannot be spared by the other.
	byName, byAddr := s.loginByName.allow(c.Name, now), s.loginByAddr.allow(remote, now)
	if !byName || !byAddr {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many login attempts", http.StatusTooManyRequests)
		return
	}
	ctx := r.Context()
	fail := func(why string) {
		if err := s.staff.AddAudit(ctx, now, c.Name, "login.failure", "", map[string]any{"remote": remote, "why": why}); err != nil {
			s.log.Error("audit login failure", "err", err)
		}
		http.Error(w, "wrong name or password", http.StatusUnauthorized)
	}
	u, err := s.staff.Staff(ctx, c.Name)
	if errors.Is(err, catalog.ErrNotFound) {
		VerifyPassword(dummyHash(), c.Password)
		fail("unknown user")
		return
	} else if err != nil {
		s.internal(w, "login", err)
		return
	}
	if ok, err := VerifyPassword(u.PasswordHash, c.Password); err != nil {
		s.internal(w, "login", err)
		return
	} else if !ok {
		fail("wrong password")
		return
	}
	if u.Disabled {
		fail("disabled")
		return
	}
	p, err := principal(u)
	if err != nil {
		fail("no valid role")
		return
	}
	// Sessions that expired unused are swept here, where new ones appear.
	if _, err := s.staff.PruneStaffSessions(ctx, now, s.cfg.SessionIdle, s.cfg.SessionAbsolute); err != nil {
		s.log.Error("prune sessions", "err", err)
	}
	id, digest := NewSecret()
	csrf, _ := NewSecret()
	if err := s.staff.AddStaffSession(ctx, digest, u.Name, csrf, now); err != nil {
		s.internal(w, "login", err)
		return
	}
	if err := s.staff.AddAudit(ctx, now, u.Name, "login.success", "", map[string]any{"remote": remote}); err != nil {
		s.internal(w, "login", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.cfg.SessionAbsolute / time.Second)})
	writeJSON(w, sessionInfo{Name: p.Name, Role: p.Role, CSRF: csrf})
}

// serveLogout is POST /api/v1/logout: the session ends and its cookie is
// cleared.
func (s *Service) serveLogout(w http.ResponseWriter, r *http.Request, p Principal) {
	if p.session != "" {
		d, _ := hex.DecodeString(p.session)
		if err := s.staff.EndStaffSession(r.Context(), d); err != nil {
			s.internal(w, "logout", err)
			return
		}
		if err := s.staff.AddAudit(r.Context(), s.cfg.Now(), p.Name, "logout", "", nil); err != nil {
			s.log.Error("audit logout", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// serveSession is GET /api/v1/session: who is logged in, and the CSRF
// token a page needs for its forms.
func (s *Service) serveSession(w http.ResponseWriter, _ *http.Request, p Principal) {
	writeJSON(w, sessionInfo{Name: p.Name, Role: p.Role, CSRF: p.csrf})
}

// csrfOK checks a cookie-authenticated request's CSRF token: the
// X-CSRF-Token header, or a form's csrf field.
func csrfOK(r *http.Request, p Principal) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" && !isJSON(r) {
		r.Body = http.MaxBytesReader(nil, r.Body, maxBody)
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(p.csrf)) == 1
}

// readJSON decodes one JSON object from a request body of at most
// maxBody bytes, refusing unknown fields and anything after the object.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// decode reads a handler's JSON body into v, or answers 400 with want
// (what the body should be); it reports whether v was read.
func (s *Service) decode(w http.ResponseWriter, r *http.Request, v any, want string) bool {
	if err := readJSON(w, r, v); err != nil {
		http.Error(w, want, http.StatusBadRequest)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

// writeJSONStatus answers v as JSON with a status other than 200.
func writeJSONStatus(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *Service) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error("backoffice: "+what, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
