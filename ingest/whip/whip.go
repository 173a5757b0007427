// Package whip is the WebRTC publish listener (WHIP, RFC 9725): a camera
// or a browser posts an SDP offer with its bearer, and the media it sends
// is put back in order, repaired by NACK where it can be and handed to an
// ingest.Recorder as the same access units an RTSP camera's become. The
// listener also serves the camera-events endpoint (camera.EventPattern).
package whip

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"camvault/camera"
	"camvault/ingest"
	"camvault/internal/netguard"
)

// Config configures the WebRTC (WHIP, RFC 9725) listener.
type Config struct {
	Address string // HTTP(S), e.g. ":8889"
	TLS     *tls.Config
	// ICEUDPAddress is the one UDP port every WebRTC session's media uses
	// (ICE UDP mux), so a firewall opens a single port: ":8189" listens on
	// every interface, "127.0.0.1:0" on loopback at a free port.
	ICEUDPAddress string
	// ICETCPAddress, when set, also offers ICE over TCP (passive) on this
	// address, for networks that drop UDP.
	ICETCPAddress string
	// PublicIPs replace the host candidates' addresses (1:1 NAT).
	PublicIPs []string
	// DisableNACK turns retransmission requests off (tests show what they
	// repair).
	DisableNACK bool
	// ReorderWait is how long a hole in a stream is held open for a
	// retransmission before it becomes a gap; default 500 ms.
	ReorderWait time.Duration
	// KeyframeEvery: a PLI asks the camera for a keyframe when this long
	// has passed without one (browsers send keyframes only on request);
	// default 2 s, the segment target.
	KeyframeEvery time.Duration
	// ReadTimeout ends a session that delivers no media this long.
	ReadTimeout time.Duration
	// StaleAfter: a new offer for a camera takes over its session when
	// that session has been silent this long; before, it is refused (409).
	StaleAfter time.Duration
	// KeyframeTimeout ends a session with no decodable keyframe this long
	// after it was set up; it opens no incident.
	KeyframeTimeout time.Duration
	// MaxOfferBytes bounds the SDP offer; default 64 KiB.
	MaxOfferBytes int64
	// Live is shared with the node's RTSP listener; nil makes one.
	Live *ingest.Live
	// Feeds, when set, gets a live copy of each recording camera's
	// packets for live viewers (ingest.Feed); nil taps nothing.
	Feeds *ingest.Feeds
	// Mount, when set, adds routes to this listener (the live view's WHEP
	// endpoint shares its port, its CORS and its connection limits).
	Mount func(mux *http.ServeMux)
	// Events records what cameras post to /cameras/<id>/events; nil
	// answers 501.
	Events camera.EventSink
	// Limits caps the HTTP listener's connections, in total and per
	// remote address (every connection counts: authentication is per
	// request here). Slow and idle clients are cut by the HTTP server's
	// own timeouts, so Limits.AuthTimeout is not used.
	Limits netguard.Limits
}

func (c *Config) defaults() {
	if c.ReorderWait <= 0 {
		c.ReorderWait = 500 * time.Millisecond
	}
	if c.KeyframeEvery <= 0 {
		c.KeyframeEvery = 2 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = 3 * time.Second
	}
	if c.KeyframeTimeout <= 0 {
		c.KeyframeTimeout = 10 * time.Second
	}
	if c.MaxOfferBytes <= 0 {
		c.MaxOfferBytes = 64 << 10
	}
	if c.Live == nil {
		c.Live = ingest.NewLive()
	}
}

// Server accepts WebRTC publishers over WHIP and records them through the
// same Recorder as RTSP: what it hands on are the same access units.
type Server struct {
	cfg      Config
	auth     camera.Authenticator
	recorder ingest.Recorder
	log      *slog.Logger
	api      *webrtc.API
	udpMux   ice.UDPMux
	tcpMux   ice.TCPMux
	tcpLn    net.Listener
	http     *http.Server
	ln       net.Listener
	udpAddr  string
	feedback map[webrtc.RTPCodecType][]webrtc.RTCPFeedback // what camvault asks senders for
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // publishers' goroutines

	events http.Handler // camera events, rate-limited per camera across requests

	mu        sync.Mutex
	resources map[string]*publisher // WHIP resource id -> session
	closed    bool

	guard   *netguard.Guard
	stopped atomic.Pointer[error] // why the HTTP listener stopped serving; nil while it serves

	// Counters, for tests and metrics.
	Refused  atomic.Int64
	Sessions atomic.Int64
}

// NewServer builds the server; Start listens.
func NewServer(cfg Config, a camera.Authenticator, r ingest.Recorder, log *slog.Logger) *Server {
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	lim := cfg.Limits
	lim.AuthTimeout = 0
	s := &Server{cfg: cfg, auth: a, recorder: r, log: log, ctx: ctx, cancel: cancel, resources: map[string]*publisher{},
		guard: netguard.New("whip", lim, log)}
	s.events = camera.NewEventHandler(a, cfg.Events, log, s.refused)
	return s
}

// Start opens the ICE ports and the HTTP listener.
func (s *Server) Start() error {
	if err := s.openICE(); err != nil {
		return err
	}
	api, err := s.newAPI()
	if err != nil {
		s.closeICE()
		return err
	}
	s.api = api
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		s.closeICE()
		return fmt.Errorf("whip listen on %s: %w", s.cfg.Address, err)
	}
	// Under TLS, so a refused connection costs no handshake.
	ln = s.guard.Wrap(ln)
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	s.http = &http.Server{
		Handler: s.Handler(),
		// A client has 5 s for its request's headers (idle and slow-loris
		// connections end there), 15 s for the whole request.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       15 * time.Second, // what net/http took from ReadTimeout; said here
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		// Serve waits out temporary accept errors itself; what ends it
		// otherwise leaves WHIP cameras without a listener: say so.
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			down := fmt.Errorf("whip listener on %s stopped: %w", s.cfg.Address, err)
			s.stopped.Store(&down)
			s.log.Error("whip listener stopped: cameras cannot connect", "address", s.cfg.Address, "err", err)
		}
	}()
	return nil
}

// API is the WebRTC API of this listener's ICE ports, once started: the
// live view's peer connections use it too, so viewers need no other port.
func (s *Server) API() *webrtc.API { return s.api }

// Healthy returns why the HTTP listener is not serving, or nil.
func (s *Server) Healthy() error {
	if err := s.stopped.Load(); err != nil {
		return *err
	}
	return nil
}

// Guard is the HTTP listener's connection guard (limits and counters).
func (s *Server) Guard() *netguard.Guard { return s.guard }

// Addr is the HTTP listener's address once started.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ICEUDPAddr is the media port's address once started.
func (s *Server) ICEUDPAddr() string { return s.udpAddr }

func (s *Server) openICE() error {
	host, portStr, err := net.SplitHostPort(s.cfg.ICEUDPAddress)
	if err != nil {
		return fmt.Errorf("ice udp address %q: %w", s.cfg.ICEUDPAddress, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("ice udp port %q: %w", portStr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		// One socket per interface address, loopback included, all on
		// the same port.
		if port == 0 {
			return errors.New("ice udp: a fixed port is needed to listen on every interface")
		}
		mux, err := ice.NewMultiUDPMuxFromPort(port, ice.UDPMuxFromPortWithLoopback(),
			ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4), ice.UDPMuxFromPortWithReadBufferSize(udpReadBuffer))
		if err != nil {
			return fmt.Errorf("ice udp port %d: %w", port, err)
		}
		s.udpMux, s.udpAddr = mux, net.JoinHostPort(host, portStr)
	} else {
		conn, err := net.ListenPacket("udp4", s.cfg.ICEUDPAddress)
		if err != nil {
			return fmt.Errorf("ice udp listen on %s: %w", s.cfg.ICEUDPAddress, err)
		}
		if err := conn.(*net.UDPConn).SetReadBuffer(udpReadBuffer); err != nil {
			s.log.Warn("ice udp read buffer not enlarged", "err", err)
		}
		s.udpMux, s.udpAddr = webrtc.NewICEUDPMux(nil, conn), conn.LocalAddr().String()
	}
	if s.cfg.ICETCPAddress != "" {
		ln, err := net.Listen("tcp4", s.cfg.ICETCPAddress)
		if err != nil {
			s.closeICE()
			return fmt.Errorf("ice tcp listen on %s: %w", s.cfg.ICETCPAddress, err)
		}
		s.tcpLn, s.tcpMux = ln, webrtc.NewICETCPMux(nil, ln, 8)
	}
	return nil
}

func (s *Server) closeICE() {
	if s.udpMux != nil {
		s.udpMux.Close()
	}
	if s.tcpMux != nil {
		s.tcpMux.Close()
	}
	if s.tcpLn != nil {
		s.tcpLn.Close()
	}
}

// udpReadBuffer is the media socket's kernel buffer: every camera's
// packets share it, and a keyframe arrives as a burst of dozens of packets
// per camera. The kernel caps it at net.core.rmem_max.
const udpReadBuffer = 4 << 20

// Codecs camvault negotiates. Browsers offer H.264 under several profiles;
// only packetization-mode 1 is accepted (mode 0 is one NAL unit per
// packet, which no current sender needs).
func (s *Server) newAPI() (*webrtc.API, error) {
	var me webrtc.MediaEngine
	videoFB := []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	audioFB := []webrtc.RTCPFeedback{{Type: "nack"}}
	if s.cfg.DisableNACK {
		videoFB = []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}}
		audioFB = nil
	}
	s.feedback = map[webrtc.RTPCodecType][]webrtc.RTCPFeedback{webrtc.RTPCodecTypeVideo: videoFB, webrtc.RTPCodecTypeAudio: audioFB}
	pt := webrtc.PayloadType(96)
	add := func(c webrtc.RTPCodecCapability, kind webrtc.RTPCodecType) error {
		pt++
		return me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: c, PayloadType: pt}, kind)
	}
	for _, profile := range []string{"42e01f", "42001f", "4d001f", "64001f"} {
		fmtp := "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile
		if err := add(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFB}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	if err := add(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	if err := add(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1", RTCPFeedback: audioFB}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}

	ir := &interceptor.Registry{}
	if !s.cfg.DisableNACK {
		// Ask again every 40 ms for what is still missing: the reorder
		// buffer waits ReorderWait, so a lost retransmission gets
		// several more tries.
		gen, err := nack.NewGeneratorInterceptor(nack.GeneratorInterval(40 * time.Millisecond))
		if err != nil {
			return nil, err
		}
		ir.Add(gen)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, err
	}
	// Transport-wide feedback lets the sender's congestion control ramp
	// up to the camera's bitrate instead of staying at its start rate.
	if err := webrtc.ConfigureTWCCSender(&me, ir); err != nil {
		return nil, err
	}

	var se webrtc.SettingEngine
	se.SetICEUDPMux(s.udpMux)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if s.tcpMux != nil {
		se.SetICETCPMux(s.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4)
	}
	se.SetNetworkTypes(types)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if len(s.cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: s.cfg.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost}); err != nil {
			return nil, fmt.Errorf("public ips: %w", err)
		}
	}
	// Consent freshness: keepalives every second; a peer silent for 3 s
	// is disconnected, for 10 s failed, which ends the session.
	se.SetICETimeouts(3*time.Second, 10*time.Second, time.Second)
	// A retransmission can arrive hundreds of packets after the hole it
	// fills (a keyframe is a burst); SRTP's default 64-packet replay
	// window would drop it as a replay. Real replays are still caught,
	// and the reorder buffer drops duplicates.
	se.SetSRTPReplayProtectionWindow(1024)
	return webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// Close ends every session (each ends interrupted) and stops listening.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	open := make([]*publisher, 0, len(s.resources))
	for _, p := range s.resources {
		open = append(open, p)
	}
	s.mu.Unlock()
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.http.Shutdown(ctx)
		cancel()
	}
	for _, p := range open {
		p.finish(ingest.EndInterrupted, errors.New("server shutting down"))
	}
	s.cancel()
	s.wg.Wait()
	s.closeICE()
}

// Handler serves the ingest HTTP endpoints: WHIP (POST /whip/<camera>,
// and DELETE, PATCH and OPTIONS on the session resource the POST answered
// with) and camera events (POST /cameras/<camera>/events).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{camera}", s.servePublish)
	mux.HandleFunc("DELETE /whip/{camera}/{resource}", s.serveDelete)
	mux.HandleFunc("PATCH /whip/{camera}/{resource}", s.servePatch)
	mux.HandleFunc("OPTIONS /whip/{camera}", s.serveOptions)
	mux.HandleFunc("OPTIONS /whip/{camera}/{resource}", s.serveOptions)
	mux.Handle(camera.EventPattern, s.events)
	if s.cfg.Mount != nil {
		s.cfg.Mount(mux)
	}
	return cors(mux)
}

// cors lets a web page on another origin publish: the camera's bearer is
// the credential, never a cookie, so any origin may call.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Expose-Headers", "Location, Accept-Patch, ETag, Link")
		h.Set("Access-Control-Max-Age", "600")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveOptions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

// refuse answers an error in plain text and counts it. why never holds a
// secret.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.refused(r, code, why)
	camera.Refuse(w, code, why)
}

// refused logs and counts a refusal, of this listener's every endpoint.
func (s *Server) refused(r *http.Request, code int, why string) {
	s.Refused.Add(1)
	s.log.Warn("whip request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", code, "reason", why)
}

// authenticate checks the bearer against the camera named in the path.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (camera.Camera, bool) {
	cam, err := camera.Bearer(r, s.auth)
	if err != nil {
		s.refuse(w, r, http.StatusUnauthorized, err.Error())
		return camera.Camera{}, false
	}
	return cam, true
}

func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	cam, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/sdp" {
		s.refuse(w, r, http.StatusUnsupportedMediaType, "the offer must be application/sdp")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxOfferBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("offer larger than %d bytes", s.cfg.MaxOfferBytes))
			return
		}
		s.refuse(w, r, http.StatusBadRequest, "reading the offer failed")
		return
	}
	plan, err := planOffer(body)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}

	p := &publisher{s: s, cam: cam, remote: r.RemoteAddr, created: time.Now(), done: make(chan struct{})}
	p.lastData.Store(time.Now().UnixNano())
	p.id, err = newResourceID()
	if err != nil {
		s.refuse(w, r, http.StatusInternalServerError, "cannot create a session id")
		return
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.refuse(w, r, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	if a, ok := s.recorder.(ingest.Admitter); ok {
		if err := a.Admit(r.Context(), cam); err != nil {
			s.refuse(w, r, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	silent, err := s.cfg.Live.Claim(cam.ID, p, s.cfg.StaleAfter)
	if err != nil {
		s.refuse(w, r, http.StatusConflict, "camera "+cam.ID+" already has a live publisher")
		return
	}
	if silent > 0 {
		s.log.Warn("whip publisher replaces a stale session", "camera", cam.ID, "remote", r.RemoteAddr, "silent", silent.Round(time.Millisecond))
	}
	answer, err := p.negotiate(body, plan)
	if err != nil {
		p.finish(ingest.EndInterrupted, err)
		var bad badOfferError
		if errors.As(err, &bad) {
			s.refuse(w, r, http.StatusBadRequest, err.Error())
		} else {
			s.log.Error("whip negotiation failed", "camera", cam.ID, "err", err)
			s.refuse(w, r, http.StatusInternalServerError, "negotiation failed")
		}
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.finish(ingest.EndInterrupted, errors.New("server shutting down"))
		s.refuse(w, r, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	s.resources[p.id] = p
	s.mu.Unlock()
	s.Sessions.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p.watch()
	}()
	s.log.Info("camera publishing over webrtc", "camera", cam.ID, "remote", r.RemoteAddr, "tracks", len(plan.tracks))

	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/whip/"+cam.ID+"/"+p.id)
	h.Set("ETag", `"`+p.id+`"`)
	h.Set("Accept-Patch", "application/trickle-ice-sdpfrag")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// resource finds the session a DELETE or PATCH names, for the camera
// whose bearer came with it.
func (s *Server) resource(w http.ResponseWriter, r *http.Request) (*publisher, bool) {
	cam, ok := s.authenticate(w, r)
	if !ok {
		return nil, false
	}
	id := r.PathValue("resource")
	s.mu.Lock()
	p := s.resources[id]
	s.mu.Unlock()
	if p == nil || p.cam.ID != cam.ID || subtle.ConstantTimeCompare([]byte(p.id), []byte(id)) != 1 {
		s.refuse(w, r, http.StatusNotFound, "no such session")
		return nil, false
	}
	return p, true
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request) {
	p, ok := s.resource(w, r)
	if !ok {
		return
	}
	p.finish(ingest.EndTeardown, nil)
	w.WriteHeader(http.StatusOK)
}

// servePatch takes trickled ICE candidates (RFC 9725 section 4.3). An ICE
// restart is not supported: the camera posts a new offer instead, which
// continues the incident.
func (s *Server) servePatch(w http.ResponseWriter, r *http.Request) {
	p, ok := s.resource(w, r)
	if !ok {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/trickle-ice-sdpfrag" {
		s.refuse(w, r, http.StatusUnsupportedMediaType, "a PATCH must be application/trickle-ice-sdpfrag")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxOfferBytes))
	if err != nil {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, "fragment too large")
		return
	}
	cands, ufrag, err := parseTrickle(body)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if ufrag != "" && ufrag != p.ufrag {
		s.refuse(w, r, http.StatusUnprocessableEntity, "ICE restart is not supported: post a new offer")
		return
	}
	for _, c := range cands {
		if err := p.pc.AddICECandidate(c); err != nil {
			s.refuse(w, r, http.StatusBadRequest, "bad candidate: "+err.Error())
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func newResourceID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// badOfferError is an offer the client must fix: 400.
type badOfferError struct{ msg string }

func (e badOfferError) Error() string { return e.msg }

func badOffer(format string, args ...any) error {
	return badOfferError{fmt.Sprintf(format, args...)}
}

// offerPlan is what camvault will record from an offer: per media section
// (by mid) the codec chosen, which becomes a track.
type offerPlan struct {
	tracks []plannedTrack
	ufrag  string // the offer's ICE username fragment
}

type plannedTrack struct {
	mid   string
	kind  webrtc.RTPCodecType
	codec sdp.Codec // as offered: its payload type is the one the sender uses
}

// planOffer parses the offer and picks, per audio or video section the
// client sends on, the first codec camvault records, in the client's
// order of preference: H.264 (packetization-mode 1) or VP8 for video,
// Opus for audio. It refuses offers camvault cannot record in full.
func planOffer(body []byte) (*offerPlan, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return nil, badOffer("malformed SDP offer: %v", err)
	}
	plan := &offerPlan{ufrag: iceUfrag(&sd)}
	video, audio := 0, 0
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "video" && kind != "audio" {
			continue // data channels and the like are left unanswered
		}
		if _, ok := md.Attribute("inactive"); ok {
			continue
		}
		if _, ok := md.Attribute("recvonly"); ok {
			continue
		}
		mid, _ := md.Attribute("mid")
		if mid == "" {
			return nil, badOffer("%s section without a mid", kind)
		}
		var chosen *sdp.Codec
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue
			}
			c, err := sd.GetCodecForPayloadType(uint8(pt))
			if err != nil {
				continue
			}
			if recordable(kind, c) {
				chosen = &c
				break
			}
		}
		if chosen == nil {
			return nil, badOffer("no supported codec in the %s section (camvault records H.264 packetization-mode 1 or VP8 video, Opus audio)", kind)
		}
		t := plannedTrack{mid: mid, codec: *chosen, kind: webrtc.RTPCodecTypeAudio}
		if kind == "video" {
			t.kind = webrtc.RTPCodecTypeVideo
			video++
		} else {
			audio++
		}
		plan.tracks = append(plan.tracks, t)
	}
	if video != 1 || audio > 1 {
		return nil, badOffer("an offer must send exactly one video and at most one audio section (got %d video, %d audio)", video, audio)
	}
	return plan, nil
}

func recordable(kind string, c sdp.Codec) bool {
	name := strings.ToLower(c.Name)
	switch {
	case kind == "video" && name == "h264":
		return c.ClockRate == 90000 && fmtpValue(c.Fmtp, "packetization-mode") == "1"
	case kind == "video" && name == "vp8":
		return c.ClockRate == 90000
	case kind == "audio" && name == "opus":
		return c.ClockRate == 48000
	}
	return false
}

func fmtpValue(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseTrickle reads an SDP fragment of trickled candidates (RFC 8840):
// a=mid lines set the section, a=candidate lines are candidates, and
// a=ice-ufrag names the ICE session they belong to.
func parseTrickle(body []byte) (cands []webrtc.ICECandidateInit, ufrag string, err error) {
	mid := ""
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			m := mid
			cands = append(cands, webrtc.ICECandidateInit{Candidate: strings.TrimPrefix(line, "a="), SDPMid: &m})
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case line == "", strings.HasPrefix(line, "a="), strings.HasPrefix(line, "m="):
		default:
			return nil, "", fmt.Errorf("not an SDP fragment line: %s", camera.SafeID(line))
		}
	}
	return cands, ufrag, nil
}
