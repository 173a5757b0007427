// Package rtsp is the RTSP publish listener: cameras ANNOUNCE and RECORD
// (over TCP, optionally UDP, optionally RTSPS), authenticated by Basic
// credentials, and what they send is handed to an ingest.Recorder.
package rtsp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/auth"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/headers"
	"github.com/bluenviron/gortsplib/v4/pkg/liberrors"
	"github.com/pion/rtp"

	"camvault/camera"
	"camvault/ingest"
	"camvault/internal/netguard"
	"camvault/media"
)

// Config configures the RTSP listener.
type Config struct {
	Address        string // TCP, e.g. ":8554"
	UDPRTPAddress  string // e.g. ":8000"; empty disables UDP transport
	UDPRTCPAddress string // e.g. ":8001"
	TLS            *tls.Config
	// ReadTimeout ends a session that sends nothing for this long.
	ReadTimeout time.Duration
	// StaleAfter: a second publisher with the camera's valid credentials
	// takes over a session that has been silent this long; while the
	// first one is live, the second is refused.
	StaleAfter time.Duration
	// KeyframeTimeout ends a session whose video has not produced a
	// decodable keyframe this long after RECORD. No incident is opened
	// before the first keyframe.
	KeyframeTimeout time.Duration
	// Live is shared with the node's WHIP listener; nil makes one.
	Live *ingest.Live
	// Feeds, when set, gets a live copy of each recording camera's H.264
	// packets for live viewers (ingest.Feed); nil taps nothing. AAC is
	// not a WebRTC codec: it is not copied.
	Feeds *ingest.Feeds
	// Limits caps the listener's connections, in total and per address
	// while not yet recording, and closes a connection that has not
	// authenticated and started recording within Limits.AuthTimeout
	// (default 10 s; negative: never). gortsplib's own ReadTimeout covers
	// only a recording session: before that it waits for a request
	// forever.
	Limits netguard.Limits
}

// Server accepts RTSP publishers (ANNOUNCE/RECORD). Reading is refused.
type Server struct {
	cfg      Config
	auth     camera.Authenticator
	recorder ingest.Recorder
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	guard    *netguard.Guard
	listen   func(network, address string) (net.Listener, error) // tests replace it

	mu      sync.Mutex
	srv     *gortsplib.Server // nil before Start and after a failed one
	watch   sync.WaitGroup
	stopped atomic.Pointer[error] // why the listener is down; nil while it serves

	live *ingest.Live

	// Counters, for tests and metrics.
	Refused  atomic.Int64
	Sessions atomic.Int64
	Restarts atomic.Int64 // the listener stopped and was started again
}

// publisher is one RTSP publishing session.
type publisher struct {
	cam      camera.Camera
	ss       *gortsplib.ServerSession
	desc     *description.Session
	remote   string
	lastData atomic.Int64 // unix nanos of the last RTP packet

	mu      sync.Mutex // orders packets of all tracks into the session
	tracks  []media.Track
	depack  map[*description.Media]map[uint8]*trackDepack
	lost    atomic.Uint64 // RTP packets lost in transit
	dupes   uint64        // duplicate or replayed RTP packets dropped
	session ingest.Session
	record  time.Time // when RECORD was accepted
	ended   bool
	replace bool // replaced by a new publisher of the same camera
	failure error
	feedTr  []ingest.FeedTrack
	feed    atomic.Pointer[ingest.Feed] // set while recording, for live viewers
}

// feedTrack describes an RTSP track for a live viewer: H.264 and Opus are
// WebRTC codecs and are copied; anything else (AAC) is described empty
// and left out.
func feedTrack(f format.Format) ingest.FeedTrack {
	switch f := f.(type) {
	case *format.H264:
		return ingest.FeedTrack{Video: true, MimeType: "video/H264", ClockRate: 90000,
			Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", SPS: f.SPS, PPS: f.PPS}
	case *format.Opus:
		return ingest.FeedTrack{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}
	}
	return ingest.FeedTrack{}
}

type trackDepack struct {
	id int
	d  ingest.Depacketizer
	// Replay and duplicate guard: a packet whose sequence number is not
	// ahead of the last one accepted is dropped before it can disturb the
	// depacketizer's state (over UDP gortsplib has already reordered).
	lastSeq uint16
	haveSeq bool
	// loss turns packets missing from the sequence (lost over UDP, or
	// never sent) and undecodable payloads into gap records.
	loss ingest.TrackLoss
}

// LastPacket implements ingest.Publisher.
func (p *publisher) LastPacket() time.Time { return time.Unix(0, p.lastData.Load()) }

// TakeOver cancels the session; gortsplib ends it (OnSessionClose) on the
// session's own goroutine.
func (p *publisher) TakeOver() {
	p.mu.Lock()
	p.replace = true
	p.mu.Unlock()
	p.ss.Close()
}

// accept reports whether pkt is new, and how many packets the sequence
// skipped before it; it records pkt.
func (td *trackDepack) accept(pkt *rtp.Packet) (ok bool, lost int) {
	if td.haveSeq {
		ahead := int16(pkt.SequenceNumber - td.lastSeq)
		if ahead <= 0 {
			return false, 0
		}
		lost = int(ahead) - 1
	}
	td.lastSeq, td.haveSeq = pkt.SequenceNumber, true
	return true, lost
}

// NewServer builds the server; Start listens.
func NewServer(cfg Config, a camera.Authenticator, r ingest.Recorder, log *slog.Logger) *Server {
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = 3 * time.Second
	}
	if cfg.KeyframeTimeout == 0 {
		cfg.KeyframeTimeout = 10 * time.Second
	}
	switch {
	case cfg.Limits.AuthTimeout == 0:
		cfg.Limits.AuthTimeout = 10 * time.Second
	case cfg.Limits.AuthTimeout < 0:
		cfg.Limits.AuthTimeout = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	if cfg.Live == nil {
		cfg.Live = ingest.NewLive()
	}
	s := &Server{cfg: cfg, auth: a, recorder: r, log: log, ctx: ctx, cancel: cancel, live: cfg.Live,
		guard: netguard.New("rtsp", cfg.Limits, log), listen: ingest.ListenBuffered}
	return s
}

// newGortsplib is one run of the listener: gortsplib's server cannot be
// started again once it has stopped, so a restart takes a new one.
func (s *Server) newGortsplib() *gortsplib.Server {
	return &gortsplib.Server{
		Handler:        s,
		RTSPAddress:    s.cfg.Address,
		UDPRTPAddress:  s.cfg.UDPRTPAddress,
		UDPRTCPAddress: s.cfg.UDPRTCPAddress,
		TLSConfig:      s.cfg.TLS,
		ReadTimeout:    s.cfg.ReadTimeout,
		WriteTimeout:   10 * time.Second,
		// Basic is the only method that hands us the secret itself, which
		// is what a MAC check needs; RTSPS protects it on the wire.
		AuthMethods: []auth.VerifyMethod{auth.VerifyMethodBasic},
		Listen:      s.listenGuarded,
	}
}

// listenGuarded is gortsplib's Listen: the buffered listener under the
// server's guard, which also keeps temporary accept errors from gortsplib
// (it ends the whole server on the first accept error it sees).
func (s *Server) listenGuarded(network, address string) (net.Listener, error) {
	l, err := s.listen(network, address)
	if err != nil {
		return nil, err
	}
	return s.guard.Wrap(l), nil
}

// Start listens on the configured addresses.
func (s *Server) Start() error {
	srv := s.newGortsplib()
	if err := srv.Start(); err != nil {
		// A listen error names the address that failed, which may be the
		// RTP or RTCP port rather than the RTSP one: naming the RTSP
		// address in front of it would point the operator at the wrong port.
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("rtsp: %w", err)
		}
		return fmt.Errorf("rtsp listen on %s: %w", s.cfg.Address, err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	s.watch.Add(1)
	go s.watchServer(srv)
	return nil
}

// Restart backoff while the listener cannot be opened again.
const (
	restartFirst = 100 * time.Millisecond
	restartMax   = 5 * time.Second
)

// watchServer notices when gortsplib's server ends without Close (a
// failed accept ends it, and every session with it), says so, reports the
// node unhealthy (Healthy) and starts the listener again until it opens.
func (s *Server) watchServer(srv *gortsplib.Server) {
	defer s.watch.Done()
	for {
		err := srv.Wait()
		if s.ctx.Err() != nil {
			return
		}
		down := fmt.Errorf("rtsp listener on %s stopped: %w", s.cfg.Address, err)
		s.stopped.Store(&down)
		s.log.Error("rtsp listener stopped: cameras cannot connect; restarting it", "address", s.cfg.Address, "err", err)
		srv = s.restart()
		if srv == nil {
			return
		}
		s.stopped.Store(nil)
		s.Restarts.Add(1)
		s.log.Warn("rtsp listener restarted", "address", s.cfg.Address)
	}
}

// restart starts a new gortsplib server, retrying with backoff; nil when
// the server is closed meanwhile.
func (s *Server) restart() *gortsplib.Server {
	delay := restartFirst
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		next := s.newGortsplib()
		if err := next.Start(); err != nil {
			if attempt == 1 || attempt%10 == 0 {
				s.log.Error("rtsp listener cannot be restarted yet", "address", s.cfg.Address, "attempt", attempt, "err", err)
			}
			delay = min(2*delay, restartMax)
			continue
		}
		s.mu.Lock()
		if s.ctx.Err() != nil { // Close ran meanwhile and did not see next
			s.mu.Unlock()
			next.Close()
			return nil
		}
		s.srv = next
		s.mu.Unlock()
		return next
	}
}

// Healthy returns why the listener is not accepting cameras, or nil.
func (s *Server) Healthy() error {
	if err := s.stopped.Load(); err != nil {
		return *err
	}
	return nil
}

// Guard is the listener's connection guard (limits and counters).
func (s *Server) Guard() *netguard.Guard { return s.guard }

// Addr returns the TCP listen address.
func (s *Server) Addr() string { return s.cfg.Address }

// Close stops accepting and ends every session (each ends Interrupted).
// It may be called after a failed Start, and more than once: gortsplib's
// own Close uses state only a successful Start sets up (it panicked when
// the RTP port was taken), and a failed Start has already released what
// it had opened.
func (s *Server) Close() {
	s.cancel()
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	s.watch.Wait()
}

func cameraFromPath(p string) string {
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimSuffix(p, "/")
	return p
}

func (s *Server) refuse(code base.StatusCode, remote, path, why string) *base.Response {
	s.Refused.Add(1)
	s.log.Warn("rtsp request refused", "remote", remote, "path", path, "status", int(code), "reason", why)
	return &base.Response{StatusCode: code}
}

// OnDescribe refuses: nobody reads footage over RTSP.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	return s.refuse(base.StatusForbidden, ctx.Conn.NetConn().RemoteAddr().String(), ctx.Path, "reading is not allowed"), nil, nil
}

// OnPlay refuses: nobody reads footage over RTSP.
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return s.refuse(base.StatusForbidden, ctx.Conn.NetConn().RemoteAddr().String(), ctx.Path, "reading is not allowed"), nil
}

// OnAnnounce authenticates the camera and checks the announced tracks.
func (s *Server) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	remote := ctx.Conn.NetConn().RemoteAddr().String()
	camID := cameraFromPath(ctx.Path)
	hdr, ok := ctx.Request.Header["Authorization"]
	if !ok {
		// gortsplib answers 401 with a Basic challenge.
		s.Refused.Add(1)
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	var ah headers.Authorization
	if err := ah.Unmarshal(hdr); err != nil || ah.Method != headers.AuthMethodBasic {
		s.refuse(base.StatusUnauthorized, remote, ctx.Path, "malformed or non-Basic credentials")
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	cam, err := s.auth.Authenticate(s.ctx, ah.Username, ah.BasicPass)
	if err != nil {
		s.refuse(base.StatusUnauthorized, remote, ctx.Path, "bad credentials for camera "+camera.SafeID(ah.Username))
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	if cam.ID != camID {
		return s.refuse(base.StatusForbidden, remote, ctx.Path, "camera "+cam.ID+" may publish only to /"+cam.ID), nil
	}

	if a, ok := s.recorder.(ingest.Admitter); ok {
		if err := a.Admit(s.ctx, cam); err != nil {
			res := s.refuse(base.StatusServiceUnavailable, remote, ctx.Path, err.Error())
			res.StatusMessage = statusLine(err.Error())
			return res, nil
		}
	}
	p := &publisher{cam: cam, ss: ctx.Session, desc: ctx.Description, remote: remote,
		depack: map[*description.Media]map[uint8]*trackDepack{}}
	for _, medi := range ctx.Description.Medias {
		for _, f := range medi.Formats {
			t, d, err := ingest.NewTrack(len(p.tracks), f)
			if err != nil {
				if errors.Is(err, ingest.ErrUnsupportedCodec) {
					// Other formats in the same media (e.g. RTX) are ignored;
					// an unknown media type refuses the stream below if no
					// usable track remains.
					s.log.Warn("rtsp track ignored", "camera", cam.ID, "remote", remote, "reason", err)
					continue
				}
				return s.refuse(base.StatusBadRequest, remote, ctx.Path, err.Error()), nil
			}
			if p.depack[medi] == nil {
				p.depack[medi] = map[uint8]*trackDepack{}
			}
			p.depack[medi][f.PayloadType()] = &trackDepack{id: t.ID, d: d, loss: ingest.TrackLoss{Track: t.ID, Video: t.IsVideo()}}
			p.tracks = append(p.tracks, t)
			p.feedTr = append(p.feedTr, feedTrack(f))
			break // one format per media
		}
	}
	if !hasVideo(p.tracks) {
		return s.refuse(base.StatusUnsupportedMediaType, remote, ctx.Path, "no H.264 video track (camvault records H.264 video with optional AAC or Opus audio)"), nil
	}
	if len(p.tracks) != len(ctx.Description.Medias) {
		return s.refuse(base.StatusUnsupportedMediaType, remote, ctx.Path, "a media has no supported codec (H.264, AAC, Opus)"), nil
	}

	p.lastData.Store(time.Now().UnixNano())
	silent, err := s.live.Claim(cam.ID, p, s.cfg.StaleAfter)
	if err != nil {
		return s.refuse(base.StatusServiceUnavailable, remote, ctx.Path, "camera "+cam.ID+" already has a live publisher"), nil
	}
	if silent > 0 {
		s.log.Warn("rtsp publisher replaces a stale session", "camera", cam.ID, "remote", remote, "silent", silent.Round(time.Millisecond))
	}
	ctx.Session.SetUserData(p)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// statusLine makes why fit an RTSP status line: one line of printable
// ASCII, so the camera sees the reason beside the code.
func statusLine(why string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return ' '
		}
		return r
	}, why)
}

func hasVideo(ts []media.Track) bool {
	for _, t := range ts {
		if t.IsVideo() {
			return true
		}
	}
	return false
}

// OnSetup accepts the SETUP of an announced session only.
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if _, ok := ctx.Session.UserData().(*publisher); !ok {
		return s.refuse(base.StatusForbidden, ctx.Conn.NetConn().RemoteAddr().String(), ctx.Path, "reading is not allowed"), nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

// OnRecord starts the recorder session and the packet flow.
func (s *Server) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	p, ok := ctx.Session.UserData().(*publisher)
	if !ok {
		return s.refuse(base.StatusForbidden, ctx.Conn.NetConn().RemoteAddr().String(), ctx.Path, "record without announce"), nil
	}
	p.mu.Lock()
	p.record = time.Now()
	p.mu.Unlock()
	// Authenticated and recording: from here gortsplib's ReadTimeout
	// watches the session, and the address's count of strangers no
	// longer includes it.
	netguard.Authenticated(ctx.Conn.NetConn())
	s.Sessions.Add(1)
	s.log.Info("camera publishing", "camera", p.cam.ID, "remote", p.remote, "tracks", len(p.tracks))

	ctx.Session.OnPacketRTPAny(func(medi *description.Media, f format.Format, pkt *rtp.Packet) {
		s.onPacket(p, medi, pkt)
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (s *Server) onPacket(p *publisher, medi *description.Media, pkt *rtp.Packet) {
	now := time.Now()
	p.lastData.Store(now.UnixNano())
	td, ok := p.depack[medi][pkt.PayloadType]
	if !ok {
		return
	}
	// The live view's copy, taken before anything else touches pkt.
	p.feed.Load().Write(td.id, pkt)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended || p.failure != nil {
		return
	}
	ok, lost := td.accept(pkt)
	if !ok {
		p.dupes++
		return
	}
	// Under the lock: the time decoder is shared by the session's tracks.
	pts, ok := p.ss.PacketPTS2(medi, pkt)
	if !ok {
		return
	}
	s.deliver(p, td, pkt, pts, lost, now)
	if p.failure == nil && p.session == nil && now.Sub(p.record) > s.cfg.KeyframeTimeout {
		p.fail(s, fmt.Errorf("%w within %v", ingest.ErrNoKeyframeReceived, s.cfg.KeyframeTimeout))
	}
}

// deliver runs one new packet through its track's depacketizer into the
// recording, lost packets before it and an undecodable payload becoming
// gaps (the depacketizer starts over at the next keyframe); p.mu is held.
func (s *Server) deliver(p *publisher, td *trackDepack, pkt *rtp.Packet, pts int64, lost int, now time.Time) {
	if lost > 0 && !s.lose(p, td, lost, nil, pts) {
		return
	}
	if len(pkt.Payload) == 0 {
		return // padding only: no media, nothing lost
	}
	aus, err := td.d.Decode(pkt, pts, now)
	td.loss.Seen(pts, pkt.Marker)
	if err != nil {
		s.log.Debug("rtp decode error", "camera", p.cam.ID, "err", err)
		if len(aus) == 0 && !s.lose(p, td, 0, err, pts) {
			return
		}
	}
	for _, au := range aus {
		if p.session == nil {
			if !au.Key || !p.tracks[au.Track].IsVideo() {
				continue // nothing is decodable before the first video keyframe
			}
			// The incident opens with the first keyframe, not at RECORD:
			// a stream that never becomes decodable opens none.
			sess, err := s.recorder.StartSession(s.ctx, p.cam, p.tracks, p.remote)
			if err != nil {
				p.fail(s, fmt.Errorf("start recording: %w", err))
				return
			}
			p.session = sess
			p.feed.Store(s.cfg.Feeds.Publish(ingest.NewFeed(p.cam.ID, p.feedTr, nil)))
		}
		td.loss.Write(p.session, au.PTS)
		if err := p.session.WriteAccessUnit(au); err != nil {
			p.fail(s, err)
			return
		}
	}
}

// lose resets td's depacketizer after media was given up on and records
// the gap (ingest.TrackLoss.Lost); false when the session had to end.
// RTSP has no way to ask a publisher for a keyframe: the gap lasts until
// the camera's next one.
func (s *Server) lose(p *publisher, td *trackDepack, lost int, undecodable error, pts int64) bool {
	if err := td.d.Reset(); err != nil {
		p.fail(s, fmt.Errorf("reset depacketizer: %w", err))
		return false
	}
	td.loss.Lost(p.session, lost, undecodable, pts)
	return true
}

// fail ends the session with err; p.mu is held.
func (p *publisher) fail(s *Server, err error) {
	p.failure = err
	s.log.Error("ending ingest session", "camera", p.cam.ID, "remote", p.remote, "err", err)
	go p.ss.Close() // Close waits for the packet reader: never from its goroutine
}

// OnSessionClose ends the recorder session.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	p, ok := ctx.Session.UserData().(*publisher)
	if !ok {
		return
	}
	s.live.Release(p.cam.ID, p)
	s.cfg.Feeds.Unpublish(p.feed.Load())

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	if p.session == nil {
		p.ended = true
		s.log.Warn("camera stopped before any keyframe: nothing recorded", "camera", p.cam.ID, "remote", p.remote, "cause", p.failureOr(ctx.Error))
		return
	}
	p.ended = true
	if lost := p.lost.Load(); lost > 0 || p.dupes > 0 {
		s.log.Warn("rtp packets lost or duplicated in transit", "camera", p.cam.ID, "lost", lost, "duplicates_dropped", p.dupes)
	}
	how, cause := ingest.EndInterrupted, ctx.Error
	var torn liberrors.ErrServerSessionTornDown
	switch {
	case p.failure != nil:
		cause = p.failure
	case p.replace:
		cause = errors.New("replaced by a new connection of the same camera")
	case errors.As(ctx.Error, &torn):
		how = ingest.EndTeardown
	}
	for _, byType := range p.depack {
		for _, td := range byType {
			td.loss.End(p.session)
		}
	}
	s.log.Info("camera stopped", "camera", p.cam.ID, "how", how, "cause", cause)
	p.session.End(how, cause)
}

func (p *publisher) failureOr(err error) error {
	if p.failure != nil {
		return p.failure
	}
	return err
}

// OnPacketsLost counts packets the transport saw missing.
func (s *Server) OnPacketsLost(ctx *gortsplib.ServerHandlerOnPacketsLostCtx) {
	if p, ok := ctx.Session.UserData().(*publisher); ok {
		p.lost.Add(ctx.Lost)
	}
}

// OnDecodeError logs transport-level decode errors (malformed RTP/RTCP).
func (s *Server) OnDecodeError(ctx *gortsplib.ServerHandlerOnDecodeErrorCtx) {
	cam := ""
	if p, ok := ctx.Session.UserData().(*publisher); ok {
		cam = p.cam.ID
	}
	s.log.Debug("rtsp decode error", "camera", cam, "err", ctx.Error)
}
