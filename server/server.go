// Package server assembles a camvault node: catalog, chunk store, the
// recorder and its pipeline, the RTSP and WHIP ingest listeners, the
// backoffice HTTP listener, the retention sweeper and the audit anchoring.
// `camvault serve`, `camvault backoffice` and the benchmarks run the same
// assembly.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
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
	"camvault/ingest/whip"
	"camvault/keys"
	"camvault/recorder"
	"camvault/retention"
	"camvault/review"
	"camvault/storage"
	"camvault/storage/fs"
)

// Config of a node. Zero values take the defaults noted.
type Config struct {
	DataDir        string // required
	RTSPAddress    string // default ":8554"
	UDPRTPAddress  string // empty: no RTSP over UDP
	UDPRTCPAddress string
	HTTPAddress    string // default ":8080"; "-" disables the listener
	// WHIPAddress is the WebRTC ingest listener; default ":8889", "-"
	// disables it.
	WHIPAddress string
	// ICEUDPAddress is WebRTC media's one UDP port; default ":8189".
	ICEUDPAddress string
	ICETCPAddress string   // empty: no ICE over TCP
	PublicIPs     []string // the host's public addresses behind a 1:1 NAT
	TLS           *tls.Config
	ReadTimeout   time.Duration
	Recorder      recorder.Config
	// SweepEvery runs the retention sweeper this often; default 10 min,
	// negative disables it.
	SweepEvery time.Duration
	// AuditAnchorEvery signs the audit trail's head and anchors it in the
	// store this often when the trail grew (and always at Close); default
	// 1 min, negative disables the periodic run.
	AuditAnchorEvery time.Duration
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
}

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
	http     *http.Server
	httpAddr string
	sweepers sync.WaitGroup
	auditor  *audit.Anchorer
	stop     context.CancelFunc

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
	cat, err := catalog.Open(dir.Catalog())
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
	if st, ok := s.Store.(selfTester); ok {
		if err := st.SelfTest(ctx, time.Now()); err != nil {
			return fmt.Errorf("refusing to start: %w", err)
		}
		s.log.Info("chunk store enforces Object Lock (self-test passed)")
	}
	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	alerts := s.cfg.Alerts
	alerts.Staff, alerts.Holds = s.Catalog, retention.Holds{Catalog: s.Catalog, Store: s.Store}
	alerts.Cameras = cameraAdmin{s.Catalog, pepper}
	if err := s.openBackofficeKeys(&alerts); err != nil {
		return err
	}
	if s.Backoffice, err = backoffice.New(alerts, s.Catalog, s.Registry, s.log); err != nil {
		return err
	}
	if s.cfg.BackofficeOnly {
		return nil
	}

	s.auditor = &audit.Anchorer{Catalog: s.Catalog, Store: s.Store, Signer: signer, Now: time.Now}
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
	s.RTSP = rtsp.NewServer(rtsp.Config{Address: s.cfg.RTSPAddress, UDPRTPAddress: udpRTP, UDPRTCPAddress: udpRTCP,
		TLS: s.cfg.TLS, ReadTimeout: s.cfg.ReadTimeout, Live: live}, auth, s.Recorder, s.log)
	if s.cfg.WHIPAddress != "-" {
		s.WHIP = whip.NewServer(whip.Config{Address: s.cfg.WHIPAddress, TLS: s.cfg.TLS,
			ICEUDPAddress: s.cfg.ICEUDPAddress, ICETCPAddress: s.cfg.ICETCPAddress, PublicIPs: s.cfg.PublicIPs,
			ReadTimeout: s.cfg.ReadTimeout, KeyframeEvery: s.cfg.Recorder.SegmentTarget, Live: live,
			Events: cameraEvents{s.Catalog}}, auth, s.Recorder, s.log)
	}
	return nil
}

// Start opens the listeners and starts the retention sweeper.
func (s *Server) Start() error {
	if err := s.Backoffice.Start(context.Background()); err != nil {
		return err
	}
	if s.RTSP != nil {
		if err := s.RTSP.Start(); err != nil {
			s.Backoffice.Close()
			return err
		}
	}
	if s.WHIP != nil {
		if err := s.WHIP.Start(); err != nil {
			s.RTSP.Close()
			s.Backoffice.Close()
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if s.cfg.BackofficeOnly {
		return s.serveHTTP()
	}
	if every := s.cfg.SweepEvery; every >= 0 {
		if every == 0 {
			every = 10 * time.Minute
		}
		sw := &retention.Sweeper{Catalog: s.Catalog, Store: s.Store, Now: time.Now, Log: s.log, ScanEvery: 24 * time.Hour}
		s.sweepers.Add(1)
		go func() {
			defer s.sweepers.Done()
			sw.Run(ctx, every)
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
	return s.serveHTTP()
}

// serveHTTP opens the backoffice listener (unless it is "-").
func (s *Server) serveHTTP() error {
	if s.cfg.HTTPAddress == "-" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.Backoffice.Register(mux)
	l, err := net.Listen("tcp", s.cfg.HTTPAddress)
	if err != nil {
		if s.RTSP != nil {
			s.RTSP.Close()
		}
		if s.WHIP != nil {
			s.WHIP.Close()
		}
		s.Backoffice.Close()
		return fmt.Errorf("backoffice listen: %w", err)
	}
	s.httpAddr = l.Addr().String()
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
	if s.stop != nil {
		s.stop()
		s.sweepers.Wait()
	}
	if s.RTSP != nil {
		s.RTSP.Close()
	}
	if s.WHIP != nil {
		s.WHIP.Close()
	}
	var err error
	if s.Recorder != nil {
		err = s.Recorder.Close()
	}
	if s.Backoffice != nil {
		s.Backoffice.Close() // ends the SSE streams, so the listener can shut down
	}
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
func (s *Server) openBackofficeKeys(cfg *backoffice.Config) error {
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
	src := &evidence.CatalogSource{Catalog: b.cat, Store: b.store, ID: incident}
	rep, _, err := evidence.Export(ctx, src, evidence.ExportOptions{DataDir: b.dataDir, OutDir: dir, NodeKey: b.nodeKey,
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
	return e.cat.AddAlert(ctx, typ, cam.ID, "", at, data)
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
