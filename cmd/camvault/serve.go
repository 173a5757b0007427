package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/asticode/go-astiav"

	"camvault/catalog"
	"camvault/codec"
	"camvault/datadir"
	"camvault/internal/diskspace"
	"camvault/internal/netguard"
	"camvault/recorder"
	"camvault/server"
	"camvault/storage"
)

// demoCamera is registered on a first start so a new user can stream at once.
const demoCamera = "demo-cam"

// serveFlags are serve's flags, defined in one place so that a test can
// apply a configuration file to exactly the set serve parses.
type serveFlags struct {
	data             *nodeFlags
	rtspAddr         *string
	rtpAddr          *string
	rtcpAddr         *string
	whipAddr         *string
	iceUDP           *string
	iceTCP           *string
	publicIPs        *string
	bf               *backofficeFlags
	retention        *time.Duration
	segmentDur       *time.Duration
	grace            *time.Duration
	readTimeout      *time.Duration
	rtspMax          *int
	rtspPerAddr      *int
	rtspAuth         *time.Duration
	whipMax          *int
	whipPerAddr      *int
	sweepEvery       *time.Duration
	transcodeWorkers *int
	transcodeCPU     *float64
	minFree          *string
	diskReserve      *string
	noDemo           *bool
	pprofAddr        *string
	node             *string
	lease            *time.Duration
	checkpointEvery  *int
}

// newServeFlags defines serve's flags.
func newServeFlags() (*flag.FlagSet, *serveFlags) {
	fl, data := newFlags("serve")
	return fl, &serveFlags{
		data:      data,
		rtspAddr:  fl.String("rtsp", ":8554", "RTSP listen address"),
		rtpAddr:   fl.String("rtsp-rtp", ":8000", "RTSP over UDP: RTP port, on --rtsp's host unless given one (empty disables UDP)"),
		rtcpAddr:  fl.String("rtsp-rtcp", ":8001", "RTSP over UDP: RTCP port, on --rtsp's host unless given one"),
		whipAddr:  fl.String("whip", ":8889", `WebRTC (WHIP) ingest listen address; "-" disables it`),
		iceUDP:    fl.String("ice-udp", ":8189", "the one UDP port for all WebRTC media (ICE UDP mux), on --whip's host unless given one"),
		iceTCP:    fl.String("ice-tcp", "", "also accept WebRTC media over ICE-TCP on this address (off by default)"),
		publicIPs: fl.String("public-ip", "", "comma-separated public addresses to announce for WebRTC (1:1 NAT)"),
		bf: addBackofficeFlags(fl, `backoffice identity, for watching and exporting footage in the backoffice (default <data>/keys/backoffice.identity; "-": none, no footage here)`,
			"certificate for every listener: RTSPS, WHIP and camera events over HTTPS, the backoffice over HTTPS (with --tls-key)"),
		retention:        fl.Duration("retention", 28*24*time.Hour, "retention period"),
		segmentDur:       fl.Duration("segment", 2*time.Second, "target segment duration"),
		grace:            fl.Duration("grace", 60*time.Second, "a reconnect within this continues the incident"),
		readTimeout:      fl.Duration("read-timeout", 10*time.Second, "end a stream silent this long"),
		rtspMax:          fl.Int("rtsp-max-conns", 0, "most RTSP connections open at once, cameras included (0: a share of the open-file limit; negative: no cap)"),
		rtspPerAddr:      fl.Int("rtsp-max-conns-per-addr", server.DefaultRTSPPerAddr, "most RTSP connections per remote address that are not recording yet (negative: no cap)"),
		rtspAuth:         fl.Duration("rtsp-auth-timeout", server.DefaultRTSPAuthTimeout, "close an RTSP connection that has not authenticated and started recording within this (negative: never)"),
		whipMax:          fl.Int("whip-max-conns", 0, "most WHIP and camera-event HTTP connections open at once (0: a share of the open-file limit; negative: no cap)"),
		whipPerAddr:      fl.Int("whip-max-conns-per-addr", server.DefaultWHIPPerAddr, "most WHIP and camera-event HTTP connections per remote address (negative: no cap)"),
		sweepEvery:       fl.Duration("sweep-every", 10*time.Minute, "how often the retention sweeper runs"),
		transcodeWorkers: fl.Int("transcode-workers", -1, "review proxies and thumbnails at ingest with N low-priority threads (-1: cores-1, at least 1; 0: off)"),
		transcodeCPU: fl.Float64("transcode-cpu", recorder.DefaultTranscodeCPU(),
			"CPU budget of review proxies and thumbnails, in cores (default an eighth of the cores); work beyond it is shed as gap records before it is copied or decoded (0: no budget)"),
		minFree:         fl.String("min-free", "1GiB", "below this free space (bytes, e.g. 512MiB, or a percentage, e.g. 5%) on the data directory's disk, take no new incidents and answer 503 on /healthz and /readyz"),
		diskReserve:     fl.String("disk-reserve", "64MiB", "space kept in <data>/reserve for the catalog, released when the disk fills so every loss is still recorded (0: none)"),
		noDemo:          fl.Bool("no-demo", false, "do not create the demo camera on first start"),
		pprofAddr:       fl.String("pprof", "", "serve Go profiling on this address (loopback only; off by default)"),
		node:            fl.String("node", "", "this node's id among the nodes sharing a catalog, registered with its key (default the host name)"),
		checkpointEvery: fl.Int("checkpoint-every", 30, "sign an incident's manifest head after this many chunks (and at every session end)"),
		lease:           fl.Duration("lease", catalog.DefaultLease, "a recording camera's lease: another node takes the camera over once this node has not renewed it for this long"),
	}
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fl, f := newServeFlags()
	if err := parseWithConfig(fl, args); err != nil {
		return err
	}
	threshold, err := diskspace.ParseThreshold(*f.minFree)
	if err != nil {
		return usagef("--min-free: %v", err)
	}
	reserve, err := diskspace.ParseBytes(*f.diskReserve)
	if err != nil {
		return usagef("--disk-reserve: %v", err)
	}
	cfg, log, closeStore, err := f.bf.config(f.data, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	cfg.RTSPAddress, cfg.UDPRTPAddress, cfg.UDPRTCPAddress = *f.rtspAddr, *f.rtpAddr, *f.rtcpAddr
	cfg.WHIPAddress, cfg.ICEUDPAddress, cfg.ICETCPAddress, cfg.PublicIPs = *f.whipAddr, *f.iceUDP, *f.iceTCP, splitList(*f.publicIPs)
	cfg.ReadTimeout, cfg.SweepEvery = *f.readTimeout, *f.sweepEvery
	cfg.MinFree, cfg.DiskReserve = threshold, int64(reserve)
	if reserve == 0 {
		cfg.DiskReserve = -1
	}
	cfg.RTSPLimits = netguard.Limits{MaxConns: *f.rtspMax, MaxPerAddr: *f.rtspPerAddr, AuthTimeout: *f.rtspAuth}
	cfg.WHIPLimits = netguard.Limits{MaxConns: *f.whipMax, MaxPerAddr: *f.whipPerAddr}
	cfg.Node = *f.node
	if *f.transcodeCPU < 0 || math.IsNaN(*f.transcodeCPU) || math.IsInf(*f.transcodeCPU, 0) {
		return usagef("--transcode-cpu %v: a number of cores, at least 0", *f.transcodeCPU)
	}
	if *f.lease < time.Second {
		return usagef("--lease %v: at least 1s (it is renewed every third of it)", *f.lease)
	}
	cfg.Recorder = recorder.Config{Lease: *f.lease, CheckpointEvery: *f.checkpointEvery, Retention: *f.retention, SegmentTarget: *f.segmentDur, Grace: *f.grace,
		Transcode: recorder.TranscodeConfig{Enabled: *f.transcodeWorkers != 0, Workers: *f.transcodeWorkers, CPU: *f.transcodeCPU}}
	srv, err := startServer(cfg, log)
	if err != nil {
		return err
	}
	if *f.pprofAddr != "" {
		if err := servePprof(*f.pprofAddr); err != nil {
			srv.Close()
			return err
		}
	}
	ctx := context.Background()
	if n, err := srv.Catalog.CameraCount(ctx); err == nil && n == 0 && !*f.noDemo {
		secret, err := addCamera(ctx, f.data, demoCamera, "demo officer", "camvault serve (demo camera)")
		if err != nil {
			srv.Close()
			return err
		}
		printFirstStart(stdout, firstStart{
			program: programPath(), dir: workingDir(), data: f.data.dir, secret: secret, tls: cfg.TLS != nil,
			rtsp: localAddr(*f.rtspAddr), whip: *f.whipAddr, http: localAddr(*f.bf.http),
		})
	}
	// The addresses bound, after the UDP ports took their TCP listener's host.
	bound := srv.Config()
	log.Info("camvault serving", "rtsp", bound.RTSPAddress, "rtsp_udp", bound.UDPRTPAddress, "whip", bound.WHIPAddress,
		"ice_udp", bound.ICEUDPAddress, "http", srv.HTTPAddr(), "metrics", srv.MetricsAddr(), "data", f.data)
	return runUntilSignal(srv, log, stdout, "ending streams and committing every segment already cut")
}

// backofficeFlags are the flags serve and backoffice share: the
// backoffice listener, its keys and exports, TLS, the store, alerts and
// the log.
type backofficeFlags struct {
	http, identity, exportDir, tlsCert, tlsKey, logLevel *string
	metrics, metricsToken                                *string
	liveView                                             *bool
	liveViewMax                                          *time.Duration
	liveViewURL                                          *string
	store                                                *storeFlags
	alerts                                               *alertFlags
}

func addBackofficeFlags(fl *flag.FlagSet, identityHelp, tlsHelp string) *backofficeFlags {
	return &backofficeFlags{
		http:      fl.String("http", ":8080", "backoffice listen address: the web UI, /api/v1, /healthz, and /metrics with --metrics-token-file's token"),
		identity:  fl.String("identity", "", identityHelp),
		exportDir: fl.String("export-dir", "", "where approved exports' bundles are written, outside the data directory (default: exports beside it)"),
		tlsCert:   fl.String("tls-cert", "", tlsHelp),
		tlsKey:    fl.String("tls-key", "", "private key of --tls-cert"),
		logLevel:  fl.String("log-level", "info", "debug, info, warn, error"),
		store:     addStoreFlags(fl),
		alerts:    addAlertFlags(fl),
		liveView: fl.Bool("live-view", false, "let staff with the live.view action watch a recording camera live, with a reason, "+
			"audited and time-limited (off by default: a live view is footage seen before it is reviewed)"),
		liveViewMax: fl.Duration("live-view-max", 10*time.Minute, "a live view ends after this; watching longer asks again with a new reason"),
		liveViewURL: fl.String("live-view-url", "", "base URL browsers reach the ingest node's WHIP listener at, for live views "+
			"(default: the backoffice's host on the WHIP port)"),
		metrics: fl.String("metrics", "", "serve /metrics, and nothing else, on this address (without a credential unless --metrics-token-file is given)"),
		metricsToken: fl.String("metrics-token-file", "", "file holding the bearer token /metrics asks for (mode 0600, at least 16 characters); "+
			"without it /metrics answers only on --metrics"),
	}
}

// config sets the process up (processSetup) and returns the server
// configuration the flags give, its log, and what closes the store.
func (f *backofficeFlags) config(data *nodeFlags, stderr io.Writer) (server.Config, *slog.Logger, func(), error) {
	cfg := server.Config{DataDir: data.dir, HTTPAddress: *f.http, IdentityFile: *f.identity, ExportDir: *f.exportDir,
		MetricsAddress: *f.metrics, LiveView: *f.liveView, LiveViewMax: *f.liveViewMax, LiveViewURL: *f.liveViewURL}
	if *f.liveViewMax < time.Second {
		return cfg, nil, nil, usagef("--live-view-max %v: at least 1s", *f.liveViewMax)
	}
	log, err := processSetup(*f.logLevel, stderr)
	if err != nil {
		return cfg, nil, nil, err
	}
	if *f.metricsToken != "" {
		if cfg.MetricsToken, err = loadMetricsToken(*f.metricsToken); err != nil {
			return cfg, nil, nil, err
		}
	}
	if cfg.Alerts, err = f.alerts.config(); err != nil {
		return cfg, nil, nil, err
	}
	if cfg.TLS, err = loadTLS(*f.tlsCert, *f.tlsKey); err != nil {
		return cfg, nil, nil, err
	}
	if cfg.Catalog, cfg.CatalogOptions, err = data.catalog(); err != nil {
		return cfg, nil, nil, err
	}
	store, closeStore, err := serverStore(f.store, data.dir)
	if err != nil {
		return cfg, nil, nil, err
	}
	cfg.Store, cfg.StoreID = store, f.store.id()
	return cfg, log, closeStore, nil
}

// minMetricsToken is the shortest metrics token accepted: a scraper's
// token is typed by no one, so nothing excuses a guessable one.
const minMetricsToken = 16

// loadMetricsToken reads the token /metrics asks for from a file other
// users cannot read.
func loadMetricsToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("metrics token: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("metrics token %s is accessible by other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("metrics token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if len(token) < minMetricsToken || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("metrics token %s: want one token of at least %d characters, no spaces", path, minMetricsToken)
	}
	return token, nil
}

// processSetup is what serve and backoffice set up before anything else:
// the umask, the log (FFmpeg's routed into it), the collector's pace and
// FFmpeg's verbosity.
func processSetup(logLevel string, stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, usagef("--log-level: %v", err)
	}
	// Everything these processes create lies in the data directory (or is
	// an export, written owner-only anyway), and some of it is created by
	// a library with a mode of its own choosing (SQLite's catalog with its
	// -wal and -shm files is 0644 by default): no group or other bits,
	// whoever creates the file.
	syscall.Umask(0o077)
	// The heap of a recording node is mostly segment buffers, which hold
	// no pointers and cost the collector little to mark: collecting at
	// 50 % growth rather than Go's 100 % costs no measurable CPU and keeps
	// a quarter less memory per camera (1.7 rather than 2.2 MiB for a
	// 4 Mbit/s stream, bench/). GOGC, when set, still decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	// x264's statistics for every proxy (at ingest, or made for a
	// reviewer) would flood the log.
	astiav.SetLogLevel(astiav.LogLevelError)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// FFmpeg's own log would go unstructured to stderr, a line or more
	// for every damaged picture a camera sends: through the log instead,
	// rate limited, so junk H.264 cannot flood it.
	codec.RouteFFmpegLog(&codec.LogLimiter{Log: log})
	return log, nil
}

// serverStore opens the chunk store the flags name for a server; nil for
// fs, which the server opens itself (and, on the ingest node, cleans of
// what a crash left).
func serverStore(sf *storeFlags, data string) (storage.ChunkStore, func(), error) {
	if sf.kind == "fs" {
		return nil, func() {}, nil
	}
	st, closeStore, err := sf.open(context.Background(), datadir.New(data), time.Now)
	if err != nil {
		return nil, nil, err
	}
	return st, closeStore, nil
}

// startServer opens the node and starts its listeners.
func startServer(cfg server.Config, log *slog.Logger) (*server.Server, error) {
	srv, err := server.Open(cfg, log)
	switch {
	case errors.Is(err, catalog.ErrNodeKeyMismatch):
		return nil, usagef("%v: give this node an id of its own (--node), or run it with the keys that id was registered with", err)
	case errors.Is(err, catalog.ErrStoreMismatch):
		return nil, usagef("%v: start this node with the chunk store the other nodes use (--store s3 and its bucket)", err)
	case err != nil:
		return nil, err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return nil, err
	}
	return srv, nil
}

// runUntilSignal says "ready" on stdout, waits for SIGINT or SIGTERM and
// closes the server.
func runUntilSignal(srv *server.Server, log *slog.Logger, stdout io.Writer, closing string) error {
	// The handler goes in before "ready": a supervisor (or a test) that
	// stops the node as soon as it says ready must get a clean shutdown,
	// not the default action that kills it mid-commit.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	fmt.Fprintln(stdout, "ready")
	<-sig
	log.Info("shutting down: " + closing)
	if err := srv.Close(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}

// loadTLS reads a certificate and key (both or neither).
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// firstStart is what the first-start message needs: how this binary was
// run, the working directory the commands are for, and the listeners.
type firstStart struct {
	program, dir, data, secret string
	tls                        bool
	rtsp, whip, http           string // whip is the listen flag: "-" is off
}

// printFirstStart tells a new user, once, how to reach the node: each
// line indented by two spaces is a command to paste as it is, with the
// program path, data directory, addresses and the demo camera's secret
// of this very start (e2e/firststart_test.go runs them). The secret goes
// to stdout here and nowhere else: never into the log.
func printFirstStart(w io.Writer, f firstStart) {
	prog, data := shellQuote(f.program), shellQuote(f.data)
	rtspScheme := "rtsp"
	if f.tls {
		rtspScheme = "rtsps"
	}
	fmt.Fprintf(w, `
camvault is running; this terminal holds the server (Ctrl-C stops it).
A demo camera %q was registered; its secret, shown only now, is %s

Run each command below in a second terminal, in %s

1. The backoffice's first staff account: set PASSWORD to its password (12 characters or
   more; it is read from stdin, never prompted); the account's API token is printed.
   Other roles: operator, reviewer, auditor.

  printf '%%s\n' "$PASSWORD" | %s user add admin --role admin --data %s

   Then sign in with admin and that password at %s://%s/

`, demoCamera, f.secret, shellQuote(f.dir), prog, data, httpScheme(tlsIf(f.tls)), f.http)
	if f.tls {
		// The simulator speaks plain RTSP only: it cannot reach RTSPS.
		fmt.Fprint(w, "2. A test camera: the simulator publishes plain RTSP only, and this server listens for RTSPS (--tls-cert): use ffmpeg (below).\n\n")
	} else {
		fmt.Fprintf(w, `2. A test camera for 30 s: camvault's own simulator, nothing else to install (it registers camera sim0).

  %s simulate --rtsp %s --cameras 1 --duration 30s --data %s

`, prog, f.rtsp, data)
	}
	fmt.Fprintf(w, `3. The incident it records (open while the camera streams, closed when it stops):

  %s incidents --data %s

Or stream a test pattern to the demo camera with the ffmpeg command-line tool
(not part of camvault; on Debian: sudo apt-get install ffmpeg):

  ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 60 -bf 0 -pix_fmt yuv420p -c:a aac \
    -f rtsp -rtsp_transport tcp %s://%s:%s@%s/%s
`, prog, data, rtspScheme, demoCamera, f.secret, f.rtsp, demoCamera)
	if f.whip != "-" {
		fmt.Fprintf(w, `
Or publish to the demo camera over WebRTC (WHIP) from any WHIP client:

  POST %s://%s/whip/%s   Authorization: Bearer %s   Content-Type: application/sdp
`, httpScheme(tlsIf(f.tls)), localAddr(f.whip), demoCamera, f.secret)
	}
	fmt.Fprintln(w)
}

func tlsIf(on bool) *tls.Config {
	if on {
		return &tls.Config{}
	}
	return nil
}

// programPath is how to run this binary from the working directory, so
// the printed commands work as printed: a path relative to the working
// directory when the binary lies below it (bin/camvault after make
// run), its absolute path when it lies elsewhere, and the bare name when
// the shell found it on the PATH.
func programPath() string {
	arg0 := os.Args[0]
	if !strings.ContainsRune(arg0, os.PathSeparator) {
		return arg0
	}
	abs, err := filepath.Abs(arg0)
	if err != nil {
		return arg0
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && filepath.IsLocal(rel) {
			if !strings.ContainsRune(rel, os.PathSeparator) {
				rel = "./" + rel // a bare name would be looked up on the PATH
			}
			return rel
		}
	}
	return abs
}

func workingDir() string {
	if wd, err := os.Getwd(); err == nil {
		return wd
	}
	return "."
}

// localAddr is where a client on this machine reaches a listen address:
// the loopback address for a wildcard host.
func localAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// shellQuote quotes s for a POSIX shell when it needs it, so a printed
// command pastes as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func portOf(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return p
	}
	return addr
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func httpScheme(t *tls.Config) string {
	if t != nil {
		return "https"
	}
	return "http"
}
