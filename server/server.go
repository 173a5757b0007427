// Package server assembles a camvault node: catalog, chunk store, the
// recorder and its pipeline, the RTSP and WHIP ingest listeners, the
// backoffice HTTP listener, the retention sweeper, the audit anchoring and
// the retry of checkpoint anchors the store refused.
// `camvault serve`, `camvault backoffice` and the benchmarks run the same
// assembly.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"camvault/audit"
	"camvault/backoffice"
	"camvault/camera"
	"camvault/catalog"
	"camvault/codec"
	"camvault/datadir"
	"camvault/evidence"
	"camvault/ingest"
	"camvault/ingest/rtsp"
	"camvault/ingest/whep"
	"camvault/ingest/whip"
	"camvault/internal/diskspace"
	"camvault/internal/netguard"
	"camvault/keys"
	"camvault/livegrant"
	"camvault/recorder"
	"camvault/retention"
	"camvault/review"
	"camvault/stages/commit"
	"camvault/storage"
	"camvault/storage/fs"
)

// Config of a node. Zero values take the defaults noted.
type Config struct {
	DataDir string // required
	// Catalog is the catalog's DSN (catalog.Open): a postgres:// URL, or
	// empty for the SQLite file in DataDir. CatalogOptions are Open's
	// (the PostgreSQL password read from a file).
	Catalog        string
	CatalogOptions []catalog.Option
	// Node is this node's id among the nodes sharing the catalog; default
	// the host name. It is registered in the catalog with the node's
	// checkpoint key, names the checkpoints it signs and holds the leases
	// of the cameras it records.
	Node string
	// StoreID describes the chunk store (its kind and where it is, no
	// secret). A PostgreSQL catalog records the first node's and refuses
	// a node with another: a shared catalog needs a shared store. Empty:
	// the fs store in DataDir, described with the host name and path.
	StoreID     string
	RTSPAddress string // default ":8554"
	// UDPRTPAddress and UDPRTCPAddress are RTSP over UDP's ports; empty:
	// no RTSP over UDP. One without a host (":8000") binds RTSPAddress's
	// host, so that a node told to listen on one address does not open
	// ports on every interface behind the operator's back.
	UDPRTPAddress  string
	UDPRTCPAddress string
	HTTPAddress    string // default ":8080"; "-" disables the listener
	// WHIPAddress is the WebRTC ingest listener; default ":8889", "-"
	// disables it.
	WHIPAddress string
	// ICEUDPAddress is WebRTC media's one UDP port; default ":8189". One
	// without a host binds WHIPAddress's host (an IPv4 one: ICE media is
	// IPv4 only), every IPv4 interface when WHIPAddress has none.
	ICEUDPAddress string
	ICETCPAddress string   // empty: no ICE over TCP
	PublicIPs     []string // the host's public addresses behind a 1:1 NAT
	TLS           *tls.Config
	ReadTimeout   time.Duration
	// MetricsAddress, when set, serves /metrics on a listener of its own
	// (for a scraper on a monitoring network or on loopback), without a
	// credential unless MetricsToken is set.
	MetricsAddress string
	// MetricsToken is the bearer token /metrics asks for. The backoffice
	// listener faces staff and the outside, so there /metrics always needs
	// it (without one configured it answers 401 to everyone); on the
	// MetricsAddress listener it is needed only when set.
	MetricsToken string
	Recorder     recorder.Config
	// SweepEvery runs the retention sweeper this often; default 10 min,
	// negative disables it.
	SweepEvery time.Duration
	// AuditAnchorEvery signs the audit trail's head and anchors it in the
	// store this often when the trail grew (and always at Close); default
	// 1 min, negative disables the periodic run.
	AuditAnchorEvery time.Duration
	// SettleEvery looks this often, on a shared catalog, for sessions of
	// dead nodes that no node took over (Recorder.SettleAbandoned, on one
	// node at a time); default 30 s, negative: never.
	SettleEvery time.Duration
	// AnchorRetryEvery looks this often for signed checkpoints whose
	// anchor the store refused, and writes them (backing off while it
	// still refuses); default 1 min, negative disables it.
	AnchorRetryEvery time.Duration
	// Store is the chunk store; nil means the fs store in DataDir/chunks.
	// A store with a SelfTest method (s3) must pass it before ingest opens.
	Store storage.ChunkStore
	// Alerts configures alert delivery from the outbox: server-sent events
	// on the backoffice listener and webhooks.
	Alerts backoffice.Config
	// IdentityFile is the backoffice identity, loaded for the backoffice
	// side only (review and export, never the ingest side); default
	// <data>/keys/backoffice.identity. "-" runs a node without it: no
	// footage can be watched or exported through the backoffice.
	IdentityFile string
	// ExportDir receives approved exports' bundles (plaintext, for a
	// police report), so it must be outside DataDir; default "exports"
	// beside the data directory.
	ExportDir string
	// BackofficeOnly runs the backoffice listener alone, beside a `serve`
	// node sharing the data directory (or its catalog and S3 store): no
	// ingest, no recorder, no retention sweeper, no audit anchoring, and
	// none of the crash reconciliation that belongs to the ingest node. It
	// is how the identity stays out of the process that parses camera
	// input.
	BackofficeOnly bool
	// RTSPLimits and WHIPLimits cap each ingest listener's connections
	// (netguard.Limits): zero values take a share of the open-file limit
	// in total and DefaultRTSPPerAddr or DefaultWHIPPerAddr per address,
	// negative ones no cap; the RTSP AuthTimeout defaults to 10 s.
	RTSPLimits, WHIPLimits netguard.Limits
	// MinFree is the free space, on the data directory's file system and
	// the fs store's, below which the node takes no new incidents and
	// /healthz and /readyz answer 503; zero: DefaultMinFree.
	MinFree diskspace.Threshold
	// DiskReserve is the size of the reserve file kept for the catalog
	// (released when the disk fills, so gap records and session ends can
	// still be committed); zero: DefaultDiskReserve, negative: none.
	DiskReserve int64
	// SpaceEvery is how often free space is checked; default 1 s.
	SpaceEvery time.Duration
	// LiveView turns the control room's live view on (off by default):
	// the backoffice grants views, the WHIP listener serves them (WHEP).
	LiveView bool
	// LiveViewMax is how long one view lasts at most; default 10 min.
	LiveViewMax time.Duration
	// LiveViewURL is the base URL viewers' browsers reach the ingest
	// node's WHIP listener at (e.g. https://ingest.example:8889); empty:
	// the host the browser reached the backoffice at, on the WHIP port.
	LiveViewURL string
}

// DefaultMinFree is the free space below which a node stops taking new
// incidents: 1 GiB, about a minute of 60 cameras at 2 Mbit/s, for the
// live ones to go on while an operator makes room.
var DefaultMinFree = diskspace.Threshold{Bytes: 1 << 30}

// DefaultDiskReserve is the catalog's reserve: 64 MiB holds the gap
// records of tens of thousands of lost segments, and the sessions' ends.
const DefaultDiskReserve = 64 << 20

// Alerts of the free-space monitor: once each time the node goes below
// its threshold, and once when it is back above it with its reserve.
const (
	AlertStorageFull      = "storage.full"
	AlertStorageRecovered = "storage.recovered"
)

// selfTester is a store that can prove it enforces retention.
type selfTester interface {
	SelfTest(ctx context.Context, now time.Time) error
}

// Server is a running node.
type Server struct {
	cfg      Config
	dir      datadir.Layout
	log      *slog.Logger
	Catalog  *catalog.Catalog
	Store    storage.ChunkStore
	Registry *prometheus.Registry
	Recorder *recorder.Recorder
	RTSP     *rtsp.Server
	WHIP     *whip.Server // nil when disabled
	// Feeds are the recording cameras' live copies, LiveView their
	// viewers (WHEP); both nil without Config.LiveView.
	Feeds    *ingest.Feeds
	LiveView *whep.Server
	http     *http.Server
	httpAddr string
	metrics  *http.Server // the MetricsAddress listener; nil without one
	// metricsLn is its socket, closed by Close even before Serve has taken
	// it over, so that a failed Start leaves the port free at once.
	metricsLn   net.Listener
	metricsAddr string // the metrics listener's address once started
	// rtspUp and whipUp say which ingest listeners Start opened, so that
	// a failed Start and Close each close only those, once.
	rtspUp, whipUp bool
	sweepers       sync.WaitGroup
	auditor        *audit.Anchorer
	stop           context.CancelFunc

	backofficeGuard *netguard.Guard
	healthChecks    []func() error // beside the listeners', for /healthz
	space           *diskspace.Monitor
	// lastSpaceAlert is the last storage.* alert written; only
	// spaceChanged touches it, which the monitor calls one at a time.
	lastSpaceAlert string
	closing        atomic.Bool // Close has begun: /readyz says not ready

	// Backoffice delivers alerts (SSE at /api/v1/events, webhooks).
	Backoffice *backoffice.Service
}

// Open prepares the node's keys, catalog and store and reconciles what a
// crash left behind; Start then opens the listeners.
func Open(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data directory")
	}
	if cfg.RTSPAddress == "" {
		cfg.RTSPAddress = ":8554"
	}
	if cfg.HTTPAddress == "" {
		cfg.HTTPAddress = ":8080"
	}
	if cfg.WHIPAddress == "" {
		cfg.WHIPAddress = ":8889"
	}
	if cfg.ICEUDPAddress == "" {
		cfg.ICEUDPAddress = ":8189"
	}
	cfg.UDPRTPAddress = sameHost(cfg.UDPRTPAddress, cfg.RTSPAddress, false)
	cfg.UDPRTCPAddress = sameHost(cfg.UDPRTCPAddress, cfg.RTSPAddress, false)
	if cfg.WHIPAddress != "-" {
		cfg.ICEUDPAddress = sameHost(cfg.ICEUDPAddress, cfg.WHIPAddress, true)
	}
	dir := datadir.New(cfg.DataDir)
	if err := dir.Create(); err != nil {
		return nil, err
	}
	keyDir := dir.Keys()
	if !keys.Exists(keyDir) && cfg.BackofficeOnly {
		return nil, fmt.Errorf("no keys in %s: start the ingest node (camvault serve) or camvault keygen first", keyDir)
	}
	if !keys.Exists(keyDir) {
		if err := keys.Generate(keyDir); err != nil {
			return nil, err
		}
		log.Info("first start: keys created", "dir", keyDir)
	}
	dsn := cfg.Catalog
	if dsn == "" {
		if err := dir.CreateCatalog(); err != nil {
			return nil, err
		}
		dsn = dir.Catalog()
	}
	if cfg.Node == "" {
		var err error
		if cfg.Node, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("node id: no --node and no host name: %w", err)
		}
	}
	cat, err := catalog.Open(dsn, append(slices.Clip(cfg.CatalogOptions), catalog.WithNode(cfg.Node))...)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, dir: dir, log: log, Catalog: cat}
	if err := s.open(); err != nil {
		cat.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	keyDir := s.dir.Keys()
	// The ingest side gets recipients only; the identity is never loaded here.
	recipients, err := keys.LoadRecipients(keyDir)
	if err != nil {
		return err
	}
	signer, err := keys.LoadSigner(keyDir)
	if err != nil {
		return err
	}
	pepper, err := keys.LoadPepper(keyDir)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if s.cfg.Store != nil {
		s.Store = s.cfg.Store
	} else {
		fst, err := fs.Open(s.dir.Chunks())
		if err != nil {
			return err
		}
		if s.cfg.BackofficeOnly {
			// What a crash left is the ingest node's to clean.
		} else if n, err := fst.RemoveStaleTemp(); err != nil {
			return err
		} else if n > 0 {
			s.log.Warn("removed partial chunk writes left by a crash", "count", n)
		}
		s.Store = fst
	}
	if catalog.IsPostgres(s.cfg.Catalog) {
		id := s.cfg.StoreID
		if id == "" {
			host, _ := os.Hostname()
			id = "fs on " + host + " at " + s.dir.Chunks()
		}
		if err := s.Catalog.UseStore(ctx, id); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
	}
	if st, ok := s.Store.(selfTester); ok {
		if err := st.SelfTest(ctx, time.Now()); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
		s.log.Info("chunk store enforces Object Lock (self-test passed)")
	}
	s.listenerLimits()
	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newGuardCollector(s))
	alerts := s.cfg.Alerts
	alerts.Staff, alerts.Holds = s.Catalog, retention.Holds{Catalog: s.Catalog, Store: s.Store}
	alerts.Cameras = cameraAdmin{s.Catalog, pepper}
	if err := s.openBackofficeKeys(&alerts, signer); err != nil {
		return err
	}
	if err := s.openLiveGrants(&alerts); err != nil {
		return err
	}
	if s.Backoffice, err = backoffice.New(alerts, s.Catalog, s.Registry, s.log); err != nil {
		return err
	}
	if s.cfg.BackofficeOnly {
		return nil
	}

	if err := s.Catalog.RegisterNode(ctx, signer.Public().(ed25519.PublicKey), time.Now()); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	s.auditor = &audit.Anchorer{Catalog: s.Catalog, Store: s.Store, Signer: signer, Now: time.Now, Lock: s.Catalog}
	if err := s.openSpace(); err != nil {
		return err
	}
	if s.Recorder, err = recorder.New(s.cfg.Recorder, s.Catalog, s.Store, recipients, signer, s.Registry, s.log); err != nil {
		return err
	}
	// Before any camera is accepted: the sessions a crash left running.
	if err := s.Recorder.RecoverInterrupted(ctx); err != nil {
		return err
	}
	udpRTP, udpRTCP := s.cfg.UDPRTPAddress, s.cfg.UDPRTCPAddress
	if udpRTP == "" || udpRTCP == "" {
		udpRTP, udpRTCP = "", ""
	}
	auth := &camera.PepperAuth{Cameras: s.Catalog, Pepper: pepper}
	live := ingest.NewLive() // one live stream per camera, whatever the protocol
	var mount func(*http.ServeMux)
	var livePub ed25519.PublicKey
	if s.cfg.LiveView {
		if s.cfg.WHIPAddress == "-" {
			return errors.New("--live-view serves viewers on the WHIP listener: it cannot be off (--whip -)")
		}
		if livePub, err = liveGrantPublic(keyDir); err != nil {
			return err
		}
		s.Feeds = ingest.NewFeeds()
		// Called when the WHIP listener starts, once LiveView is made below.
		mount = func(mux *http.ServeMux) { s.LiveView.Register(mux) }
	}
	s.RTSP = rtsp.NewServer(rtsp.Config{Address: s.cfg.RTSPAddress, UDPRTPAddress: udpRTP, UDPRTCPAddress: udpRTCP,
		TLS: s.cfg.TLS, ReadTimeout: s.cfg.ReadTimeout, Live: live, Feeds: s.Feeds, Limits: s.cfg.RTSPLimits}, auth, s.Recorder, s.log)
	if s.cfg.WHIPAddress != "-" {
		s.WHIP = whip.NewServer(whip.Config{Address: s.cfg.WHIPAddress, TLS: s.cfg.TLS,
			ICEUDPAddress: s.cfg.ICEUDPAddress, ICETCPAddress: s.cfg.ICETCPAddress, PublicIPs: s.cfg.PublicIPs,
			ReadTimeout: s.cfg.ReadTimeout, KeyframeEvery: s.cfg.Recorder.SegmentTarget, Live: live, Feeds: s.Feeds, Mount: mount,
			Events: cameraEvents{s.Catalog}, Limits: s.cfg.WHIPLimits}, auth, s.Recorder, s.log)
	}
	if s.cfg.LiveView {
		s.LiveView = whep.New(whep.Config{Peers: s.WHIP, Feeds: s.Feeds, Key: livePub, Ended: s.liveEnded}, s.log)
		lv := s.LiveView
		s.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "camvault", Name: "live_views_open",
			Help: "Live views (WHEP) open on this node."}, func() float64 { return float64(lv.Open()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "camvault", Name: "live_views_refused_total",
				Help: "Live-view requests the ingest node refused (grant missing, invalid, expired, reused or for another viewer; camera not recording)."},
				func() float64 { return float64(lv.Refused.Load()) }))
	}
	return nil
}

// sameHost gives addr, a listen address, the host of like when addr has
// none (":8000"), so that the UDP listeners follow the TCP listener they
// belong to. An addr that does not parse is returned as it is, for its
// listener to refuse with its own error. ipv4Only leaves addr as it is
// when like's host is an IPv6 address, which an IPv4-only listener could
// not bind.
func sameHost(addr, like string, ipv4Only bool) string {
	host, port, err := net.SplitHostPort(addr)
	if addr == "" || err != nil || host != "" {
		return addr
	}
	likeHost, _, err := net.SplitHostPort(like)
	if err != nil || likeHost == "" {
		return addr
	}
	if ip := net.ParseIP(likeHost); ipv4Only && ip != nil && ip.To4() == nil {
		return addr
	}
	return net.JoinHostPort(likeHost, port)
}

// Config is the node's configuration with the defaults filled in: the
// addresses its listeners bind.
func (s *Server) Config() Config { return s.cfg }

// Start opens the listeners and starts the retention sweeper. When it
// fails, it has closed every listener it opened and its error names the
// address that could not be bound; Close still releases the rest.
func (s *Server) Start() error {
	if err := s.Backoffice.Start(context.Background()); err != nil {
		return fmt.Errorf("start backoffice: %w", err)
	}
	if s.RTSP != nil {
		if err := s.RTSP.Start(); err != nil {
			s.closeListeners()
			return err
		}
		s.rtspUp = true
	}
	if s.WHIP != nil {
		if err := s.WHIP.Start(); err != nil {
			s.closeListeners()
			return err
		}
		s.whipUp = true
	}
	if err := s.serveMetrics(); err != nil {
		s.closeListeners()
		return err
	}
	if err := s.serveHTTP(); err != nil {
		s.closeListeners()
		return err
	}
	if s.cfg.BackofficeOnly {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if every := s.cfg.SweepEvery; every >= 0 {
		if every == 0 {
			every = 10 * time.Minute
		}
		// Lock: on a shared (PostgreSQL) catalog one node sweeps at a time.
		sw := &retention.Sweeper{Catalog: s.Catalog, Store: s.Store, Now: time.Now, Log: s.log, ScanEvery: 24 * time.Hour, Lock: s.Catalog}
		s.sweepers.Add(1)
		go func() {
			defer s.sweepers.Done()
			sw.Run(ctx, every)
		}()
	}
	if s.space != nil {
		every := s.cfg.SpaceEvery
		if every <= 0 {
			every = time.Second
		}
		s.sweepers.Add(1)
		go func() {
			defer s.sweepers.Done()
			s.space.Run(ctx.Done(), every)
		}()
	}
	if every := s.cfg.AuditAnchorEvery; every >= 0 {
		if every == 0 {
			every = time.Minute
		}
		s.sweepers.Add(1)
		go func() {
			defer s.sweepers.Done()
			s.auditor.Run(ctx, every, s.log)
		}()
	}
	if every := s.cfg.SettleEvery; every >= 0 && s.Catalog.Shared() {
		if every == 0 {
			every = 30 * time.Second
		}
		s.sweepers.Add(1)
		go func() {
			defer s.sweepers.Done()
			s.Recorder.RunSettler(ctx, every)
		}()
	}
	if every := s.cfg.AnchorRetryEvery; every >= 0 {
		if every == 0 {
			every = time.Minute
		}
		re := &commit.Reanchorer{Catalog: s.Catalog, Store: s.Store, Log: s.log, Lock: s.Catalog}
		s.sweepers.Add(1)
		go func() {
			defer s.sweepers.Done()
			re.Run(ctx, every)
		}()
	}
	return nil
}

// closeListeners closes what Start opened: the ingest listeners, the
// metrics listener and the backoffice's alert delivery. Each is closed
// once, whether a failed Start or Close gets here first.
func (s *Server) closeListeners() {
	if s.rtspUp {
		s.RTSP.Close()
		s.rtspUp = false
	}
	if s.LiveView != nil {
		s.LiveView.Close() // each view's end is audited before the catalog closes
	}
	if s.whipUp {
		s.WHIP.Close()
		s.whipUp = false
	}
	if s.metrics != nil {
		s.metrics.Close()
		s.metricsLn.Close()
		s.metrics, s.metricsLn = nil, nil
	}
	if s.Backoffice != nil {
		s.Backoffice.Close() // ends the SSE streams, so the listener can shut down
	}
}

// metricsHandler serves the registry. With needToken, or whenever a
// token is configured, only to a request bearing the token; the
// comparison is of digests in constant time, so the time it takes says
// nothing about the token.
func (s *Server) metricsHandler(needToken bool) http.Handler {
	h := promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})
	token := s.cfg.MetricsToken
	if token == "" && !needToken {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		gotSum := sha256.Sum256([]byte(got))
		if token == "" || !ok || subtle.ConstantTimeCompare(gotSum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="camvault metrics"`)
			http.Error(w, "metrics need the bearer token of --metrics-token-file, or the --metrics listener", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveMetrics opens the metrics listener, when one is configured. It
// serves /metrics alone: none of the backoffice, whose staff API it must
// not expose to the scraper's network.
func (s *Server) serveMetrics() error {
	if s.cfg.MetricsAddress == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler(false))
	l, err := net.Listen("tcp", s.cfg.MetricsAddress)
	if err != nil {
		return fmt.Errorf("metrics listen: %w", err)
	}
	s.metricsLn, s.metricsAddr = l, l.Addr().String()
	s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go s.metrics.Serve(l)
	return nil
}

// MetricsAddr returns the metrics listener's address once started; empty
// without one.
func (s *Server) MetricsAddr() string { return s.metricsAddr }

// serveHTTP opens the backoffice listener (unless it is "-").
func (s *Server) serveHTTP() error {
	if s.cfg.HTTPAddress == "-" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metricsHandler(true))
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	s.Backoffice.Register(mux)
	l, err := net.Listen("tcp", s.cfg.HTTPAddress)
	if err != nil {
		return fmt.Errorf("backoffice listen: %w", err)
	}
	s.httpAddr = l.Addr().String()
	// A cap in total, so staff clients cannot take the descriptors ingest needs.
	l = s.backofficeGuard.Wrap(l)
	if s.cfg.TLS != nil {
		// The session cookie is then marked Secure (the handler sees r.TLS).
		l = tls.NewListener(l, s.cfg.TLS.Clone())
	}
	s.http = &http.Server{Handler: compress(mux), ReadHeaderTimeout: 10 * time.Second}
	go s.http.Serve(l)
	return nil
}

// compress gzips pages, scripts and JSON for the control room's screens.
// Alert streams and video pass through as they are (by content type). A
// few random bytes of padding in each compressed response keep its length
// from telling an attacker, who can put text next to a CSRF token, what
// the token is (BREACH).
func compress(h http.Handler) http.Handler {
	wrap, err := gzhttp.NewWrapper(
		gzhttp.ContentTypes([]string{"text/html", "application/json", "text/css", "text/javascript", "text/csv"}),
		gzhttp.RandomJitter(32, 0, false))
	if err != nil {
		panic(err) // the options are constants
	}
	return wrap(h)
}

// HTTPAddr returns the backoffice listener's address once started.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Close ends every stream, commits every segment already cut, and closes
// the catalog.
func (s *Server) Close() error {
	s.closing.Store(true)
	if s.stop != nil {
		s.stop()
		s.sweepers.Wait()
	}
	if s.rtspUp {
		s.RTSP.Close()
		s.rtspUp = false
	}
	if s.LiveView != nil {
		s.LiveView.Close() // each view's end is audited before the catalog closes
	}
	if s.whipUp {
		s.WHIP.Close()
		s.whipUp = false
	}
	var err error
	if s.Recorder != nil {
		err = s.Recorder.Close()
	}
	s.closeListeners()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.http.Shutdown(ctx)
		cancel()
	}
	if s.auditor != nil {
		// The last logins and views before the stop get a signed head too.
		if _, _, aerr := s.auditor.Anchor(context.Background()); aerr != nil {
			s.log.Warn("audit head not anchored at shutdown", "err", aerr)
		}
	}
	if c, ok := s.Store.(io.Closer); ok {
		c.Close()
	}
	if cerr := s.Catalog.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// openBackofficeKeys loads the backoffice identity and gives it to the
// backoffice's footage and export services, and to nothing else.
func (s *Server) openBackofficeKeys(cfg *backoffice.Config, signer ed25519.PrivateKey) error {
	if s.cfg.IdentityFile == "-" {
		s.log.Warn("no backoffice identity: footage cannot be watched or exported here")
		return nil
	}
	path := s.cfg.IdentityFile
	if path == "" {
		path = s.dir.Identity()
	}
	ids, err := keys.LoadIdentity(path)
	if err != nil {
		return err
	}
	pub, err := keys.LoadNodePublic(s.dir.NodePub())
	if err != nil {
		return err
	}
	exportDir := s.cfg.ExportDir
	if exportDir == "" {
		if exportDir, err = s.dir.DefaultExportDir(); err != nil {
			return err
		}
	}
	reviewer := &review.Reviewer{Identities: ids, Renderer: codec.NewProxyRenderer(codec.ProxyConfig{}), Audit: s.Catalog}
	cfg.Footage = footage{cat: s.Catalog, store: s.Store, reviewer: reviewer}
	cfg.Exports, cfg.ExportDir = s.Catalog, exportDir
	cfg.Bundler = bundler{cat: s.Catalog, store: s.Store, dataDir: s.cfg.DataDir, nodeKey: pub, ids: ids}
	cfg.Redactions = s.Catalog
	cfg.Redactor = &redactor{cat: s.Catalog, store: s.Store, nodeKey: pub, signer: signer, node: s.cfg.Node, ids: ids, now: time.Now}
	return nil
}

// footage decrypts review proxies for the backoffice (review.Reviewer on
// the catalog and the chunk store).
type footage struct {
	cat      *catalog.Catalog
	store    storage.ChunkStore
	reviewer *review.Reviewer
}

func (f footage) View(ctx context.Context, req review.Request) (*review.Rendition, error) {
	return f.reviewer.Proxy(ctx, &evidence.CatalogSource{Catalog: f.cat, Store: f.store, ID: req.Incident}, req)
}

// bundler writes approved exports as `camvault export` does.
type bundler struct {
	cat     *catalog.Catalog
	store   storage.ChunkStore
	dataDir string
	nodeKey ed25519.PublicKey
	ids     []age.Identity
}

func (b bundler) Bundle(ctx context.Context, incident, dir string) error {
	info, err := b.cat.Incident(ctx, incident)
	if err != nil {
		return err
	}
	keys, err := b.cat.NodeKeys(ctx)
	if err != nil {
		return err
	}
	src := &evidence.CatalogSource{Catalog: b.cat, Store: b.store, ID: incident}
	rep, _, err := evidence.Export(ctx, src, evidence.ExportOptions{DataDir: b.dataDir, OutDir: dir,
		NodeKeys:   evidence.NodeKeys{ByNode: keys, Any: []ed25519.PublicKey{b.nodeKey}},
		Identities: b.ids, Info: info, Exporter: codec.Exporter{}})
	if err == nil && rep != nil && !rep.OK() {
		err = fmt.Errorf("incident %s fails verification", incident)
	}
	return err
}

// cameraEvents puts what cameras report into the catalog's alert outbox.
type cameraEvents struct{ cat *catalog.Catalog }

func (e cameraEvents) CameraEvent(ctx context.Context, cam camera.Camera, typ string, at time.Time, data map[string]any) error {
	data["officer"] = cam.Officer
	incident := ""
	if typ == camera.EventAssist {
		// About the incident being recorded, when there is one; an
		// officer may ask before the camera records, and is still heard.
		id, err := e.cat.OpenIncident(ctx, cam.ID)
		if err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		incident = id
	}
	return e.cat.AddAlert(ctx, typ, cam.ID, incident, at, data)
}

// cameraAdmin is the camera registry as the backoffice's admins see it.
type cameraAdmin struct {
	*catalog.Catalog
	pepper []byte
}

func (c cameraAdmin) RotateCamera(ctx context.Context, id, by string, now time.Time) (string, error) {
	secret, err := camera.NewSecret()
	if err != nil {
		return "", err
	}
	if err := c.RotateCameraSecret(ctx, id, camera.SecretMAC(c.pepper, secret), by, now); err != nil {
		return "", err
	}
	return secret, nil
}

// openLiveGrants gives the backoffice the key it signs live-view grants
// with, under --live-view. A node run with --identity - leaves granting
// to the backoffice process beside it and loads no signing key.
func (s *Server) openLiveGrants(cfg *backoffice.Config) error {
	if !s.cfg.LiveView || s.cfg.IdentityFile == "-" {
		return nil
	}
	key, err := keys.EnsureLiveGrantKey(s.dir.Keys())
	if err != nil {
		return err
	}
	cfg.Live = &backoffice.LiveConfig{Key: key, Max: s.cfg.LiveViewMax, URL: s.whepURL}
	return nil
}

// liveGrantPublic is the key the ingest node checks grants with, the pair
// made on the first start with --live-view, whichever side starts first.
func liveGrantPublic(dir string) (ed25519.PublicKey, error) {
	pub, err := keys.LoadLiveGrantPublic(dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := keys.EnsureLiveGrantKey(dir); err != nil {
			return nil, err
		}
		return keys.LoadLiveGrantPublic(dir)
	}
	return pub, err
}

// whepURL is where a viewer's browser reaches a camera's live view: the
// configured base, or the host the browser reached the backoffice at on
// the WHIP listener's port.
func (s *Server) whepURL(r *http.Request, camera string) string {
	if base := strings.TrimSuffix(s.cfg.LiveViewURL, "/"); base != "" {
		return base + "/whep/" + camera
	}
	port := ""
	if s.WHIP != nil && s.whipUp {
		_, port, _ = net.SplitHostPort(s.WHIP.Addr())
	} else {
		_, port, _ = net.SplitHostPort(s.cfg.WHIPAddress)
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/whep/" + camera
}

// liveEnded audits a live view's end, with its duration: the ingest node
// is where a view ends (its limit, the viewer leaving, the camera
// stopping), and it writes the catalog's audit trail as the backoffice
// does.
func (s *Server) liveEnded(g livegrant.Grant, started time.Time, lasted time.Duration, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Catalog.AddAudit(ctx, time.Now(), g.Person, backoffice.AuditLiveEnded, g.Incident, map[string]any{
		"grant": g.ID, "camera": g.Camera, "reason": g.Reason, "started": started.UTC().Format(time.RFC3339Nano),
		"duration_s": lasted.Round(time.Millisecond).Seconds(), "why": why})
	if err != nil {
		s.log.Error("live view end not audited", "grant", g.ID, "person", g.Person, "incident", g.Incident, "err", err)
	}
}
