package whip

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/rtptime"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"camvault/camera"
	"camvault/ingest"
	"camvault/media"
)

// publisher is one WHIP session: a peer connection whose tracks are
// put back in order, depacketized and handed to the Recorder exactly as an
// RTSP session's are.
type publisher struct {
	s        *Server
	id       string
	cam      camera.Camera
	remote   string
	created  time.Time
	pc       *webrtc.PeerConnection
	ufrag    string // the offer's ICE username fragment: another one is a restart
	done     chan struct{}
	lastData atomic.Int64 // unix nanos of the last RTP packet

	mu       sync.Mutex // orders all tracks' packets into the session
	tracks   []media.Track
	inputs   []*rtcTrack
	byKind   map[webrtc.RTPCodecType]*rtcTrack
	pts      rtptime.GlobalDecoder2
	session  ingest.Session
	ended    bool
	replaced bool
	failure  error
	lastKey  time.Time // the last video keyframe
	lastPLI  time.Time
	wantKey  bool // a keyframe is needed now: loss, or start
	ssrc     uint32
	stats    rtcStats
	feedTr   []ingest.FeedTrack
	feed     atomic.Pointer[ingest.Feed] // set while recording, for live viewers
}

// rtcStats are a session's transport counters, logged at its end.
type rtcStats struct {
	packets, lost, late uint64
}

// rtcTrack is one track's receive state.
type rtcTrack struct {
	id      int
	format  format.Format
	d       ingest.Depacketizer
	reorder *ingest.ReorderBuffer
	loss    ingest.TrackLoss
}

// negotiate applies the offer and returns the complete answer (all host
// candidates included: the server's candidates are known at once).
func (p *publisher) negotiate(offer []byte, plan *offerPlan) (string, error) {
	p.byKind = map[webrtc.RTPCodecType]*rtcTrack{}
	for i, pt := range plan.tracks {
		f, err := gortsplibFormat(pt.codec)
		if err != nil {
			return "", badOffer("%v", err)
		}
		t, d, err := ingest.NewTrack(i, f)
		if err != nil {
			return "", badOffer("%v", err)
		}
		in := &rtcTrack{id: i, format: f, d: d, reorder: ingest.NewReorderBuffer(p.s.cfg.ReorderWait, 4096),
			loss: ingest.TrackLoss{Track: i, Video: t.IsVideo()}}
		p.tracks = append(p.tracks, t)
		p.inputs = append(p.inputs, in)
		p.byKind[pt.kind] = in
		p.feedTr = append(p.feedTr, ingest.FeedTrack{Video: pt.kind == webrtc.RTPCodecTypeVideo, MimeType: pt.kind.String() + "/" + pt.codec.Name,
			ClockRate: pt.codec.ClockRate, Channels: channels(pt.codec), Fmtp: pt.codec.Fmtp})
	}
	p.pts.Initialize()
	p.wantKey = true

	pc, err := p.s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	p.pc = pc
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.s.wg.Add(1)
		defer p.s.wg.Done()
		p.read(tr)
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed:
			go p.finish(ingest.EndInterrupted, errors.New("webrtc connection failed: the camera stopped answering consent checks"))
		case webrtc.PeerConnectionStateClosed:
			go p.finish(ingest.EndInterrupted, errors.New("the camera closed the connection without DELETE"))
		case webrtc.PeerConnectionStateDisconnected:
			p.s.log.Warn("webrtc camera disconnected; waiting for it", "camera", p.cam.ID)
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return "", badOffer("offer rejected: %v", err)
	}
	p.ufrag = plan.ufrag
	chosen := map[string]plannedTrack{}
	for _, pt := range plan.tracks {
		chosen[pt.mid] = pt
	}
	for _, tr := range pc.GetTransceivers() {
		pt, ok := chosen[tr.Mid()]
		if !ok {
			continue
		}
		// One codec per section in the answer, so the client sends what
		// the track was set up for.
		c := pt.codec
		err := tr.SetCodecPreferences([]webrtc.RTPCodecParameters{{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: pt.kind.String() + "/" + c.Name, ClockRate: c.ClockRate,
				Channels: channels(c), SDPFmtpLine: c.Fmtp, RTCPFeedback: p.s.feedback[pt.kind]},
			PayloadType: webrtc.PayloadType(c.PayloadType),
		}})
		if err != nil {
			return "", badOffer("%s codec %s: %v", pt.kind, c.Name, err)
		}
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", badOffer("cannot answer the offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return "", errors.New("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP, nil
}

func channels(c sdp.Codec) uint16 {
	if c.EncodingParameters == "2" {
		return 2
	}
	return 0
}

func iceUfrag(sd *sdp.SessionDescription) string {
	if v, ok := sd.Attribute("ice-ufrag"); ok {
		return v
	}
	for _, md := range sd.MediaDescriptions {
		if v, ok := md.Attribute("ice-ufrag"); ok {
			return v
		}
	}
	return ""
}

// gortsplibFormat describes a negotiated codec as the RTP format whose
// depacketizer and timestamp rules the RTSP ingest uses as well.
func gortsplibFormat(c sdp.Codec) (format.Format, error) {
	switch strings.ToLower(c.Name) {
	case "h264":
		return &format.H264{PayloadTyp: c.PayloadType, PacketizationMode: 1}, nil
	case "vp8":
		return &format.VP8{PayloadTyp: c.PayloadType}, nil
	case "opus":
		return &format.Opus{PayloadTyp: c.PayloadType, ChannelCount: 2}, nil
	}
	return nil, fmt.Errorf("%w: %s", ingest.ErrUnsupportedCodec, c.Name)
}

// read delivers one remote track's packets until the connection closes.
func (p *publisher) read(tr *webrtc.TrackRemote) {
	p.mu.Lock()
	in := p.byKind[tr.Kind()]
	if in != nil && tr.Kind() == webrtc.RTPCodecTypeVideo {
		p.ssrc = uint32(tr.SSRC())
	}
	p.mu.Unlock()
	if in == nil {
		return
	}
	p.requestKeyframe(time.Now())
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		// The live view's copy, taken before anything else touches pkt.
		p.feed.Load().Write(in.id, pkt)
		p.onPacket(in, pkt, time.Now())
	}
}

func (p *publisher) onPacket(in *rtcTrack, pkt *rtp.Packet, now time.Time) {
	p.lastData.Store(now.UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended || p.failure != nil {
		return
	}
	p.stats.packets++
	if pkt.PayloadType != in.format.PayloadType() {
		return // nothing else was negotiated for this section
	}
	p.deliver(in, in.reorder.Push(pkt, now), now)
}

// deliver runs packets released by the reorder buffer through the
// depacketizer into the session; p.mu is held.
func (p *publisher) deliver(in *rtcTrack, res ingest.ReorderResult, now time.Time) {
	p.stats.late += uint64(res.Late)
	p.stats.lost += uint64(res.Lost)
	for i, pkt := range res.Packets {
		if p.failure != nil {
			return
		}
		pts, ok := p.pts.Decode(in.format, pkt)
		if !ok {
			continue
		}
		if lost := res.LostBefore[i]; lost > 0 {
			p.onLoss(in, lost, nil, pts, now)
		}
		if len(pkt.Payload) == 0 {
			// Padding only: senders probe bandwidth with these between
			// pictures. No media, so nothing to decode and nothing lost.
			continue
		}
		aus, err := in.d.Decode(pkt, pts, now)
		in.loss.Seen(pts, pkt.Marker)
		if err != nil {
			p.s.log.Debug("rtp decode error", "camera", p.cam.ID, "err", err)
			if len(aus) == 0 {
				// What the camera sent is not recorded: as much a hole
				// as a lost packet, and the pictures after an undecodable
				// one are undecodable until the next keyframe.
				p.onLoss(in, 0, err, pts, now)
			}
		}
		for _, au := range aus {
			p.writeAU(in, au, now)
		}
	}
}

// onLoss handles media given up on (see ingest.TrackLoss.Lost): the
// depacketizer starts over at the next keyframe, which is asked for at
// once.
func (p *publisher) onLoss(in *rtcTrack, lost int, undecodable error, pts int64, now time.Time) {
	if err := in.d.Reset(); err != nil {
		p.fail(fmt.Errorf("reset depacketizer: %w", err))
		return
	}
	if in.loss.Lost(p.session, lost, undecodable, pts) {
		p.wantKey = true
		p.sendPLI(now)
	}
}

func (p *publisher) writeAU(in *rtcTrack, au *media.AccessUnit, now time.Time) {
	video := p.tracks[in.id].IsVideo()
	if video && au.Key {
		p.lastKey, p.wantKey = now, false
	}
	if p.session == nil {
		if !video || !au.Key {
			return // nothing is decodable before the first video keyframe
		}
		sess, err := p.s.recorder.StartSession(p.s.ctx, p.cam, p.tracks, p.remote)
		if err != nil {
			p.fail(fmt.Errorf("start recording: %w", err))
			return
		}
		p.session = sess
		p.feed.Store(p.s.cfg.Feeds.Publish(ingest.NewFeed(p.cam.ID, p.feedTr, func() { p.requestKeyframe(time.Now()) })))
	}
	in.loss.Write(p.session, au.PTS)
	if err := p.session.WriteAccessUnit(au); err != nil {
		p.fail(err)
	}
}

// fail ends the session with err; p.mu is held.
func (p *publisher) fail(err error) {
	if p.failure != nil {
		return
	}
	p.failure = err
	p.s.log.Error("ending webrtc ingest session", "camera", p.cam.ID, "remote", p.remote, "err", err)
	go p.finish(ingest.EndInterrupted, err)
}

// requestKeyframe asks for a keyframe now if one is wanted.
func (p *publisher) requestKeyframe(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sendPLI(now)
}

// sendPLI sends a Picture Loss Indication, at most every 300 ms; p.mu is held.
func (p *publisher) sendPLI(now time.Time) {
	if p.ssrc == 0 || p.pc == nil || now.Sub(p.lastPLI) < 300*time.Millisecond {
		return
	}
	p.lastPLI = now
	// A write to the connection's UDP socket: it does not wait on the peer.
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: p.ssrc}}); err != nil {
		p.s.log.Debug("pli not sent", "camera", p.cam.ID, "err", err)
	}
}

// watch ends a session that went silent or never became decodable, asks
// for keyframes when a segment is due one, and releases packets held for
// a retransmission that is not coming.
func (p *publisher) watch() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-p.s.ctx.Done():
			return
		case now := <-t.C:
			if silent := now.Sub(time.Unix(0, p.lastData.Load())); silent > p.s.cfg.ReadTimeout {
				p.finish(ingest.EndInterrupted, fmt.Errorf("no media for %v", silent.Round(time.Second)))
				return
			}
			p.mu.Lock()
			if p.session == nil && now.Sub(p.created) > p.s.cfg.KeyframeTimeout && p.failure == nil {
				p.fail(fmt.Errorf("%w within %v", ingest.ErrNoKeyframeReceived, p.s.cfg.KeyframeTimeout))
			}
			if p.wantKey || (!p.lastKey.IsZero() && now.Sub(p.lastKey) >= p.s.cfg.KeyframeEvery) {
				p.sendPLI(now)
			}
			for _, in := range p.inputs {
				if !p.ended && p.failure == nil {
					var res ingest.ReorderResult
					in.reorder.Expire(&res, now)
					p.deliver(in, res, now)
				}
			}
			p.mu.Unlock()
		}
	}
}

// LastPacket implements ingest.Publisher.
func (p *publisher) LastPacket() time.Time { return time.Unix(0, p.lastData.Load()) }

// TakeOver ends this session because its camera posted a new offer.
func (p *publisher) TakeOver() {
	p.mu.Lock()
	p.replaced = true
	p.mu.Unlock()
	go p.finish(ingest.EndInterrupted, errors.New("replaced by a new connection of the same camera"))
}

// finish ends the session once: what is still held is delivered, the
// recording ends with how, and the peer connection closes.
func (p *publisher) finish(how string, cause error) {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return
	}
	if p.failure == nil {
		now := time.Now()
		for _, in := range p.inputs {
			p.deliver(in, in.reorder.Flush(), now)
		}
	}
	p.ended = true
	close(p.done)
	if p.failure != nil {
		how, cause = ingest.EndInterrupted, p.failure
	}
	if p.session != nil {
		for _, in := range p.inputs {
			in.loss.End(p.session)
		}
	}
	sess, st := p.session, p.stats
	p.mu.Unlock()

	s := p.s
	s.cfg.Feeds.Unpublish(p.feed.Load())
	s.cfg.Live.Release(p.cam.ID, p)
	s.mu.Lock()
	if s.resources[p.id] == p {
		delete(s.resources, p.id)
	}
	s.mu.Unlock()
	if st.lost > 0 || st.late > 0 {
		s.log.Warn("rtp packets lost or late", "camera", p.cam.ID, "packets", st.packets, "lost", st.lost, "late_dropped", st.late)
	}
	if sess == nil {
		s.log.Warn("webrtc camera stopped before any keyframe: nothing recorded", "camera", p.cam.ID, "remote", p.remote, "cause", cause)
	} else {
		s.log.Info("camera stopped", "camera", p.cam.ID, "how", how, "cause", cause)
		sess.End(how, cause)
	}
	if p.pc != nil {
		// Close waits for the track readers, which may be waiting for
		// p.mu: never under it, and never on a pion callback's goroutine.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			p.pc.Close()
		}()
	}
}
