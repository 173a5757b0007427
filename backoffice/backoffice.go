package backoffice

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config of the backoffice's alert delivery. Zero values take the
// defaults noted.
type Config struct {
	// Auth tells who makes a request besides the staff accounts in Staff
	// (e.g. an API-token file); with neither, every request is refused.
	Auth Authorizer
	// Staff is the catalog's staff accounts and sessions, and what the
	// JSON API reads; nil: login, incidents, audit and users answer 503.
	Staff StaffStore
	// Holds places and releases legal holds; nil: those answer 503.
	Holds Holds
	// Exports keeps export requests and their approvals, and Bundler
	// writes an approved export's bundle in a new directory under
	// ExportDir (outside the data directory); without all three the
	// export endpoints answer 503.
	Exports   ExportStore
	Bundler   ExportBundler
	ExportDir string
	// Redactions keeps redaction requests and Redactor detects faces and
	// renders approved ones into ExportDir; without both (and ExportDir)
	// the redaction endpoints answer 503.
	Redactions RedactionStore
	Redactor   Redactor
	// Footage serves decrypted footage to reviewers; nil: the footage
	// endpoints answer 503.
	Footage Footage
	// Live turns live views on; nil: the grant endpoint answers 404.
	Live *LiveConfig
	// Cameras is the camera registry for admins; nil: 503.
	Cameras CameraAdmin
	// SessionIdle and SessionAbsolute end a login session after that long
	// unused or after that long in all (defaults 12 h and 24 h).
	SessionIdle, SessionAbsolute time.Duration
	// LoginEvery and LoginBurst rate-limit logins per user name and per
	// remote address (defaults one per 10 s after a burst of 5).
	LoginEvery time.Duration
	LoginBurst int
	// Webhooks are the URLs every alert is POSTed to; WebhookSecret (at
	// least 16 bytes) signs them and is required when there are any.
	Webhooks      []string
	WebhookSecret []byte
	Poll          time.Duration // outbox poll interval; default 100 ms
	Heartbeat     time.Duration // SSE comment when idle; default 15 s
	// ClientBuffer is how many alerts may wait for one SSE client; a
	// client further behind is disconnected (default 256).
	ClientBuffer int
	// WriteTimeout drops an SSE client whose socket takes longer to accept
	// one event (default 10 s).
	WriteTimeout time.Duration
	// RetryMin and RetryMax bound the webhook backoff: RetryMin doubling
	// up to RetryMax, jittered (defaults 500 ms and 60 s).
	RetryMin, RetryMax time.Duration
	RequestTimeout     time.Duration // one webhook attempt; default 10 s
	// Transport for webhooks; nil: http.DefaultTransport.
	Transport http.RoundTripper
	Now       func() time.Time
}

// AlertCatalog is what the alert service needs of the catalog: the outbox
// it delivers and the webhooks it delivers to.
type AlertCatalog interface {
	Outbox
	WebhookStore
}

// Service delivers the alert outbox: server-sent events on the backoffice
// listener and webhooks.
type Service struct {
	cfg     Config
	cat     AlertCatalog
	log     *slog.Logger
	hub     *hub
	client  *http.Client
	metrics metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	hooks  []*webhook

	auth                     Authorizer
	staff                    StaffStore
	holds                    Holds
	loginByName, loginByAddr *limiter
	routes                   []Route
	views                    views
}

type metrics struct {
	sseClients       prometheus.Gauge
	sseDropped       prometheus.Counter
	webhookDelivered prometheus.Counter
	webhookFailed    prometheus.Counter
	delivery         *prometheus.HistogramVec
}

// New checks cfg and prepares the service; reg (may be nil) gets its
// metrics.
func New(cfg Config, cat AlertCatalog, reg prometheus.Registerer, log *slog.Logger) (*Service, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.ClientBuffer <= 0 {
		cfg.ClientBuffer = 256
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 500 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 60 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 12 * time.Hour
	}
	if cfg.SessionAbsolute <= 0 {
		cfg.SessionAbsolute = 24 * time.Hour
	}
	if cfg.LoginEvery <= 0 {
		cfg.LoginEvery = 10 * time.Second
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = 5
	}
	if l := cfg.Live; l != nil {
		if len(l.Key) != ed25519.PrivateKeySize || l.URL == nil {
			return nil, errors.New("live view needs a grant key and a WHEP URL")
		}
		lc := *l
		if lc.Max <= 0 {
			lc.Max = 10 * time.Minute
		}
		if lc.StartWithin <= 0 {
			lc.StartWithin = time.Minute
		}
		cfg.Live = &lc
	}
	var auth chain
	if cfg.Staff != nil {
		auth = append(auth, &staffAuth{store: cfg.Staff, now: cfg.Now, idle: cfg.SessionIdle, absolute: cfg.SessionAbsolute})
	}
	if cfg.Auth != nil {
		auth = append(auth, cfg.Auth)
	}
	seen := map[string]bool{}
	for _, u := range cfg.Webhooks {
		if err := checkWebhookURL(u); err != nil {
			return nil, err
		}
		if seen[u] {
			return nil, fmt.Errorf("webhook %s given twice", u)
		}
		seen[u] = true
	}
	if len(cfg.Webhooks) > 0 && len(cfg.WebhookSecret) < minSecretLen {
		return nil, errors.New("webhooks need a signing secret of at least 16 bytes (--webhook-secret-file)")
	}
	s := &Service{cfg: cfg, cat: cat, log: log, hub: newHub(cat, cfg.Poll, log),
		auth: auth, staff: cfg.Staff, holds: cfg.Holds,
		loginByName: &limiter{every: cfg.LoginEvery, burst: cfg.LoginBurst},
		loginByAddr: &limiter{every: cfg.LoginEvery, burst: cfg.LoginBurst},
		// A redirect is not an acknowledgement: the alert stays queued.
		client: &http.Client{Transport: cfg.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		metrics: metrics{
			sseClients: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "camvault", Name: "sse_clients",
				Help: "Server-sent event streams open on /api/v1/events."}),
			sseDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "camvault", Name: "sse_slow_clients_dropped_total",
				Help: "SSE clients disconnected for falling behind (they resume with Last-Event-ID)."}),
			webhookDelivered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "camvault", Name: "webhook_deliveries_total",
				Help: "Alerts acknowledged by a webhook receiver with a 2xx."}),
			webhookFailed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "camvault", Name: "webhook_failed_attempts_total",
				Help: "Webhook attempts that failed (error or non-2xx) and will be retried."}),
			delivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "camvault", Name: "alert_delivery_seconds",
				Help:    "Time from an alert's event time to it being written to an SSE client or acknowledged by a webhook.",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60, 600}}, []string{"via"}),
		},
	}
	if reg != nil {
		m := s.metrics
		for _, c := range []prometheus.Collector{m.sseClients, m.sseDropped, m.webhookDelivered, m.webhookFailed, m.delivery} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register backoffice metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Start positions the poller at the outbox's end, loads each webhook's
// delivery state (creating it for a new URL) and starts delivering.
func (s *Service) Start(ctx context.Context) error {
	if err := s.hub.init(ctx); err != nil {
		return err
	}
	for _, u := range s.cfg.Webhooks {
		st, err := s.cat.EnsureWebhook(ctx, u, s.cfg.Now())
		if err != nil {
			return err
		}
		s.hooks = append(s.hooks, &webhook{svc: s, url: u, pos: st.Delivered})
		if st.Attempts > 0 {
			s.log.Warn("webhook was failing before this start", "url", u, "attempts", st.Attempts, "last_error", st.LastError)
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1 + len(s.hooks))
	go func() {
		defer s.wg.Done()
		s.hub.run(s.ctx)
	}()
	for _, w := range s.hooks {
		go func() {
			defer s.wg.Done()
			w.run(s.ctx)
		}()
	}
	// Exports approved before a stop are bundled now.
	if err := s.resumeExports(s.ctx); err != nil {
		s.log.Error("exports approved before the last stop were not resumed", "err", err)
	}
	if err := s.resumeRedactions(s.ctx); err != nil {
		s.log.Error("redactions approved before the last stop were not resumed", "err", err)
	}
	return nil
}

// Register mounts the backoffice API on mux, every route through handle
// with its action in the authorisation matrix.
func (s *Service) Register(mux *http.ServeMux) {
	s.handle(mux, "GET /api/v1/events", ActionAlertsRead, s.serveEvents)
	s.staffRoutes(mux)
	s.uiRoutes(mux)
}

// Close stops the poller (ending every SSE stream) and the webhooks; an
// attempt under way finishes first, so its outcome is recorded.
func (s *Service) Close() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}
