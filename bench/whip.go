package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// WHIPOptions configure one simulated WebRTC camera.
type WHIPOptions struct {
	Endpoint string // http://host:port/whip/<camera>
	Token    string // the camera secret
	Duration time.Duration
	// Loss drops this fraction of outgoing RTP packets at random, below
	// the NACK responder, so retransmissions can be lost too. The first
	// picture is spared: a real camera answers camvault's keyframe request
	// at start with a new one, which a looped clip cannot. So is the last:
	// no packet follows it to show the receiver a hole, so no NACK can
	// ask for what it loses (a loss there is a gap, never a repair).
	Loss float64
	// Drop drops every transmission of the packets it selects
	// (retransmissions included): loss no NACK can repair.
	Drop func(seq uint16) bool
	// NoNACK leaves retransmission requests unanswered.
	NoNACK bool
	// Teardown sends DELETE at the end; otherwise the connection is
	// just closed, as a camera that loses power would.
	Teardown bool
	// TCP restricts ICE to TCP (a network that drops UDP).
	TCP bool
	// PreEvent is the buffer from before activation sent first, faster
	// than real time.
	PreEvent time.Duration
	// Linger is how long the camera stays connected after its last
	// picture, answering NACKs, before DELETE or closing; default 700 ms.
	Linger time.Duration
}

// WHIPResult is what a simulated WebRTC camera sent.
type WHIPResult struct {
	Frames   int64  // access units sent
	Packets  int64  // RTP packets handed to the transport
	Dropped  int64  // transmissions dropped by Loss or Drop
	Location string // the WHIP session resource
}

// ErrWHIPStatus is a WHIP endpoint's refusal.
type ErrWHIPStatus struct {
	Code int
	Body string
}

func (e *ErrWHIPStatus) Error() string { return fmt.Sprintf("whip: %d %s", e.Code, e.Body) }

// PublishWHIP streams the clip in a loop for opt.Duration, in real time,
// to a WHIP endpoint, through pion's WebRTC stack: H.264 packetization
// mode 1, NACK responder, RTCP reports, as a WebRTC bodycam sends.
func (c *Clip) PublishWHIP(ctx context.Context, opt WHIPOptions) (WHIPResult, error) {
	var res WHIPResult
	var me webrtc.MediaEngine
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
		PayloadType: 102,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return res, err
	}
	ir := &interceptor.Registry{}
	loss := &lossyInterceptor{rate: opt.Loss, drop: opt.Drop, spare: uint16(len(c.Frames[0]))}
	// Registered first, it wraps the transport itself: the NACK
	// responder's retransmissions go through it as well.
	ir.Add(loss)
	if !opt.NoNACK {
		resp, err := nack.NewResponderInterceptor()
		if err != nil {
			return res, err
		}
		ir.Add(resp)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return res, err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if opt.TCP {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return res, err
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "camvault-sim")
	if err != nil {
		return res, err
	}
	sender, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return res, err
	}
	// RTCP from the server (NACKs, PLIs) must be read for the
	// interceptors to see it.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Sender().Read(buf); err != nil {
				return
			}
		}
	}()
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return res, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return res, err
	}
	<-gathered
	answer, loc, err := postOffer(ctx, opt.Endpoint, opt.Token, pc.LocalDescription().SDP)
	if err != nil {
		return res, err
	}
	res.Location = loc
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return res, err
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		return res, errors.New("whip: not connected after 10 s")
	case <-ctx.Done():
		return res, ctx.Err()
	}

	var seq uint16
	p := c.pacing(opt.Duration, opt.PreEvent)
	start := time.Now()
	for i := 0; i < p.total; i++ {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Until(p.at(start, i))):
		}
		if i == p.total-1 {
			loss.spareFrom(seq)
		}
		err := c.eachPacket(i, &seq, func(pkt *rtp.Packet) error {
			res.Packets++
			return track.WriteRTP(pkt)
		})
		if err != nil {
			return res, err
		}
		res.Frames++
	}
	// Leave time for the last NACKs to be answered.
	linger := opt.Linger
	if linger <= 0 {
		linger = 700 * time.Millisecond
	}
	select {
	case <-time.After(linger):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.Dropped = loss.dropped.Load()
	if opt.Teardown {
		if err := deleteSession(ctx, opt.Endpoint, loc, opt.Token); err != nil {
			return res, err
		}
	}
	return res, nil
}

func postOffer(ctx context.Context, endpoint, token, offer string) (answer, location string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewBufferString(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return "", "", &ErrWHIPStatus{Code: resp.StatusCode, Body: string(bytes.TrimSpace(body))}
	}
	return string(body), resp.Header.Get("Location"), nil
}

func deleteSession(ctx context.Context, endpoint, location, token string) error {
	base, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	u, err := base.Parse(location)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &ErrWHIPStatus{Code: resp.StatusCode}
	}
	return nil
}

// lossyInterceptor drops outgoing RTP to simulate a lossy mobile link.
type lossyInterceptor struct {
	interceptor.NoOp
	rate    float64
	drop    func(uint16) bool
	spare   uint16 // sequence numbers below this are never dropped at random
	dropped atomic.Int64
	// tail, once set, is 1 + the first sequence number of the last
	// picture: from there on nothing is dropped at random.
	tail atomic.Uint32
}

// spareFrom spares the packets from seq on (the last picture's).
func (l *lossyInterceptor) spareFrom(seq uint16) { l.tail.Store(uint32(seq) + 1) }

// spared says whether seq is exempt from random loss.
func (l *lossyInterceptor) spared(seq uint16) bool {
	if seq < l.spare {
		return true
	}
	t := l.tail.Load()
	return t != 0 && int16(seq-uint16(t-1)) >= 0
}

func (l *lossyInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if (l.drop != nil && l.drop(h.SequenceNumber)) || (l.rate > 0 && !l.spared(h.SequenceNumber) && rand.Float64() < l.rate) {
			l.dropped.Add(1)
			return len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

// NewInterceptor lets the registry use the one instance.
func (l *lossyInterceptor) NewInterceptor(string) (interceptor.Interceptor, error) { return l, nil }

// WHEPViewer is a live view (WHEP) opened with pion, as a control-room
// viewer would: it counts the video packets it receives.
type WHEPViewer struct {
	pc      *webrtc.PeerConnection
	Packets atomic.Int64
}

// ViewWHEP opens a live view at a WHEP URL with a grant's token.
func ViewWHEP(ctx context.Context, whepURL, token string) (*WHEPViewer, error) {
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("whep viewer codecs: %w", err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("whep viewer: %w", err)
	}
	v := &WHEPViewer{pc: pc}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		pc.Close()
		return nil, fmt.Errorf("whep viewer: %w", err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			v.Packets.Add(1)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("whep offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		pc.Close()
		return nil, fmt.Errorf("whep offer: %w", err)
	}
	<-gathered
	answer, _, err := postOffer(ctx, whepURL, token, pc.LocalDescription().SDP)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("whep: %w", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		pc.Close()
		return nil, fmt.Errorf("whep answer: %w", err)
	}
	return v, nil
}

// Close ends the view from the viewer's side.
func (v *WHEPViewer) Close() error { return v.pc.Close() }
