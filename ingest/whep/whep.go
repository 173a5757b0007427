// Package whep is the control room's live view on the ingest node: a
// WHEP endpoint (the playback twin of WHIP) that forwards a recording
// camera's packets, as the protocol server tapped them (ingest.Feed), to a
// viewer holding a live-view grant the backoffice signed (livegrant). The
// node checks the grant with the backoffice's public key and keeps no
// staff accounts; each grant opens one view, once, for a limited time,
// and the end of every view is reported (Config.Ended) for the audit
// trail. Nothing here writes to the recording: a viewer only reads copies.
package whep

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"camvault/camera"
	"camvault/ingest"
	"camvault/livegrant"
)

// Config of the live-view endpoint.
type Config struct {
	// Peers makes the viewers' peer connections: the WHIP listener, so
	// viewers use its ICE ports.
	Peers interface{ API() *webrtc.API }
	// Feeds are the node's recording cameras.
	Feeds *ingest.Feeds
	// Key checks grants: the backoffice's public key.
	Key ed25519.PublicKey
	// Ended is told of every view that was opened, when it ends: the
	// grant, when it started and why it ended.
	Ended func(g livegrant.Grant, started time.Time, lasted time.Duration, why string)
	// Buffer is each viewer's queue, in packets; a viewer further behind
	// loses packets (and waits for a keyframe). Default 1024, about a
	// second of a 4 Mbit/s camera.
	Buffer int
	// MaxViewers bounds the views open at once on the node; default 64.
	MaxViewers int
	Now        func() time.Time
}

// Server serves POST /whep/{camera} and DELETE /whep/{camera}/{view}.
type Server struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	used   map[string]time.Time // grant ids used, until their view's end
	views  map[string]*view
	closed bool
	wg     sync.WaitGroup

	// Refused counts refusals, Opened views opened.
	Refused, Opened atomic.Int64
}

// New returns the endpoint; Register mounts it.
func New(cfg Config, log *slog.Logger) *Server {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: log, used: map[string]time.Time{}, views: map[string]*view{}}
}

// Register mounts the endpoint on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /whep/{camera}", s.serveView)
	mux.HandleFunc("DELETE /whep/{camera}/{view}", s.serveDelete)
	mux.HandleFunc("OPTIONS /whep/{camera}", s.serveOptions)
	mux.HandleFunc("OPTIONS /whep/{camera}/{view}", s.serveOptions)
}

// Open is how many views are open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.views)
}

// Close ends every view.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	open := make([]*view, 0, len(s.views))
	for _, v := range s.views {
		open = append(open, v)
	}
	s.mu.Unlock()
	for _, v := range open {
		v.end("server shutting down")
	}
	s.wg.Wait()
}

func (s *Server) serveOptions(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.Refused.Add(1)
	s.log.Warn("live view refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", code, "reason", why)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="camvault live view"`)
	}
	camera.Refuse(w, code, why)
}

const maxOffer = 64 << 10

// serveView is POST /whep/{camera}: a grant's one view.
func (s *Server) serveView(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		s.refuse(w, r, http.StatusUnauthorized, "a live view needs a grant from the backoffice (Authorization: Bearer)")
		return
	}
	now := s.cfg.Now()
	g, err := livegrant.Verify(s.cfg.Key, tok, now)
	if err != nil {
		s.refuse(w, r, http.StatusUnauthorized, err.Error())
		return
	}
	if g.Camera != r.PathValue("camera") {
		s.refuse(w, r, http.StatusForbidden, "the grant is for another camera")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/sdp" {
		s.refuse(w, r, http.StatusUnsupportedMediaType, "the offer must be application/sdp")
		return
	}
	offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOffer))
	if err != nil {
		s.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("offer larger than %d bytes", maxOffer))
		return
	}
	// Before the grant's one use is spent: someone else's connection
	// cannot use it up.
	if g.Fingerprint != "" && !fingerprintIs(offer, g.Fingerprint) {
		s.refuse(w, r, http.StatusForbidden, "the grant was given for another viewer's connection")
		return
	}
	if !s.claim(g, now) {
		s.refuse(w, r, http.StatusForbidden, "the grant was used already: each grant opens one view")
		return
	}
	feed := s.cfg.Feeds.Get(g.Camera)
	if feed == nil {
		s.refuse(w, r, http.StatusNotFound, "camera "+g.Camera+" is not recording on this node")
		return
	}
	s.mu.Lock()
	full, closed := len(s.views) >= s.cfg.MaxViewers, s.closed
	s.mu.Unlock()
	if closed {
		s.refuse(w, r, http.StatusServiceUnavailable, "server shutting down")
		return
	}
	if full {
		s.refuse(w, r, http.StatusServiceUnavailable, "too many live views open on this node")
		return
	}
	v, answer, err := s.open(g, feed, offer)
	if err != nil {
		s.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Info("live view opened", "person", g.Person, "incident", g.Incident, "camera", g.Camera, "grant", g.ID, "until", g.End())
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/whep/"+g.Camera+"/"+v.id)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// claim spends a grant's one use; false when it was spent already. Used
// ids are remembered until the grant could not start a view anyway.
func (s *Server) claim(g livegrant.Grant, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, until := range s.used {
		if now.After(until) {
			delete(s.used, id)
		}
	}
	if _, seen := s.used[g.ID]; seen {
		return false
	}
	s.used[g.ID] = time.Unix(g.StartBy, 0).Add(time.Second)
	return true
}

// fingerprintIs reports whether every a=fingerprint line of the offer
// (there is at least one) is want.
func fingerprintIs(offer []byte, want string) bool {
	n := 0
	for _, line := range strings.Split(string(offer), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=fingerprint:"); ok {
			if !strings.EqualFold(strings.TrimSpace(v), want) {
				return false
			}
			n++
		}
	}
	return n > 0
}

// serveDelete ends a view; its URL is the credential (it is known only
// to who opened it), compared in full.
func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	v := s.views[r.PathValue("view")]
	s.mu.Unlock()
	if v == nil || v.grant.Camera != r.PathValue("camera") {
		s.refuse(w, r, http.StatusNotFound, "no such live view")
		return
	}
	v.end("the viewer ended it")
	w.WriteHeader(http.StatusOK)
}

// view is one viewer's peer connection and forward.
type view struct {
	s       *Server
	id      string
	grant   livegrant.Grant
	feed    *ingest.Feed
	sub     *ingest.FeedViewer
	pc      *webrtc.PeerConnection
	tracks  []*outTrack // by feed track; nil: not forwarded
	started time.Time
	once    sync.Once
	done    chan struct{}
	why     string
}

// outTrack is one forwarded track: the viewer's sequence numbers are the
// camera's plus off, which grows by one for each packet the forward adds
// (parameter sets ahead of a keyframe), so a loss still shows as one.
type outTrack struct {
	in      ingest.FeedTrack
	local   *webrtc.TrackLocalStaticRTP
	started bool // video: the first keyframe went out
	off     uint16
}

func (s *Server) open(g livegrant.Grant, feed *ingest.Feed, offer []byte) (*view, string, error) {
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, "", fmt.Errorf("view id: %w", err)
	}
	api := s.cfg.Peers.API()
	if api == nil {
		return nil, "", errors.New("the WebRTC listener is not running")
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", fmt.Errorf("peer connection: %w", err)
	}
	v := &view{s: s, id: hex.EncodeToString(idb[:]), grant: g, feed: feed, pc: pc, done: make(chan struct{})}
	fail := func(err error) (*view, string, error) {
		pc.Close()
		return nil, "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return fail(fmt.Errorf("offer rejected: %v", err))
	}
	var senders []*webrtc.RTPSender
	v.tracks = make([]*outTrack, len(feed.Tracks))
	for i, t := range feed.Tracks {
		if t.MimeType == "" {
			continue
		}
		kind := "audio"
		if t.Video {
			kind = "video"
		}
		local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: t.MimeType, ClockRate: t.ClockRate,
			Channels: t.Channels, SDPFmtpLine: t.Fmtp}, kind, "camvault-"+g.Camera)
		if err != nil {
			return fail(fmt.Errorf("%s track: %v", kind, err))
		}
		snd, err := pc.AddTrack(local)
		if err != nil {
			return fail(fmt.Errorf("%s track: %v", kind, err))
		}
		senders = append(senders, snd)
		v.tracks[i] = &outTrack{in: t, local: local}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("cannot answer the offer: %v", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(fmt.Errorf("set local description: %v", err))
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return fail(errors.New("ICE gathering did not complete"))
	}
	if v.sub = feed.Subscribe(s.cfg.Buffer); v.sub == nil {
		return fail(errors.New("the camera stopped"))
	}
	v.started = s.cfg.Now()
	s.mu.Lock()
	s.views[v.id] = v
	s.mu.Unlock()
	s.Opened.Add(1)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateClosed {
			go v.end("the viewer's connection " + st.String())
		}
	})
	s.wg.Add(1 + len(senders))
	for _, snd := range senders {
		go func() {
			defer s.wg.Done()
			v.readRTCP(snd)
		}()
	}
	go func() {
		defer s.wg.Done()
		v.forward()
	}()
	return v, pc.LocalDescription().SDP, nil
}

// readRTCP passes a viewer's keyframe requests on to the camera.
func (v *view) readRTCP(snd *webrtc.RTPSender) {
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.keyframe()
			}
		}
	}
}

func (v *view) keyframe() {
	if v.feed.Keyframe != nil {
		v.feed.Keyframe()
	}
}

// forward copies the feed to the viewer until the grant's end, the
// camera's, or the viewer's.
func (v *view) forward() {
	limit := time.NewTimer(time.Until(v.grant.End()))
	defer limit.Stop()
	v.keyframe() // a WebRTC camera sends one at once; RTSP: the next
	dropped := int64(0)
	for {
		select {
		case <-v.done:
			return
		case <-limit.C:
			v.end("the grant's time limit")
			return
		case <-v.feed.Done():
			v.end("the camera stopped recording")
			return
		case fp := <-v.sub.C:
			if d := v.sub.Dropped(); d != dropped {
				// The queue overflowed: video is broken until a keyframe.
				dropped = d
				for _, t := range v.tracks {
					if t != nil && t.in.Video {
						t.started = false
					}
				}
				v.keyframe()
			}
			if fp.Track < len(v.tracks) && v.tracks[fp.Track] != nil {
				v.tracks[fp.Track].write(fp.Packet)
			}
		}
	}
}

// write sends one packet; video starts at a keyframe, with the parameter
// sets ahead of it when the camera gave them out of band.
func (t *outTrack) write(pkt *rtp.Packet) {
	if t.in.Video && !t.started {
		if !KeyframeStart(t.in.MimeType, pkt.Payload) {
			return
		}
		t.started = true
		if len(t.in.SPS) > 0 && len(t.in.PPS) > 0 && !startsWithSPS(pkt.Payload) {
			ps := &rtp.Packet{Header: pkt.Header, Payload: stapA(t.in.SPS, t.in.PPS)}
			ps.Marker = false
			ps.SequenceNumber += t.off
			t.off++
			t.local.WriteRTP(ps)
		}
	}
	out := &rtp.Packet{Header: pkt.Header, Payload: pkt.Payload}
	out.Header.Extensions = nil
	out.Header.Extension = false
	out.SequenceNumber += t.off
	// An error is a viewer whose connection is going: its end is seen
	// by the connection state.
	t.local.WriteRTP(out)
}

// end closes the view once and reports it.
func (v *view) end(why string) {
	v.once.Do(func() {
		v.why = why
		close(v.done)
		v.sub.Close()
		s := v.s
		s.mu.Lock()
		delete(s.views, v.id)
		s.mu.Unlock()
		lasted := s.cfg.Now().Sub(v.started)
		s.log.Info("live view ended", "person", v.grant.Person, "incident", v.grant.Incident, "camera", v.grant.Camera,
			"grant", v.grant.ID, "lasted", lasted.Round(time.Millisecond), "why", why)
		if s.cfg.Ended != nil {
			s.cfg.Ended(v.grant, v.started, lasted, why)
		}
		s.wg.Add(1)
		// Close waits for the RTCP readers: never on a pion callback's
		// goroutine, which the connection-state handler is.
		go func() {
			defer s.wg.Done()
			v.pc.Close()
		}()
	})
}
