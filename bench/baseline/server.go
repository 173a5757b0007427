package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/pion/rtp"
)

// server accepts RTSP publishers and records each one with a recorder.
type server struct {
	dir           string
	segment, part time.Duration
	logf          func(format string, args ...any)

	rtsp *gortsplib.Server

	mu     sync.Mutex
	bySess map[*gortsplib.ServerSession]*recorder
	byPath map[string]*recorder
}

func (s *server) start(addr string) error {
	s.bySess = map[*gortsplib.ServerSession]*recorder{}
	s.byPath = map[string]*recorder{}
	// Defaults otherwise, as a plain deployment runs it; UDP stays off
	// (no RTP/RTCP ports), the cameras publish interleaved over TCP.
	s.rtsp = &gortsplib.Server{Handler: s, RTSPAddress: addr}
	if err := s.rtsp.Start(); err != nil {
		return fmt.Errorf("rtsp listen %s: %w", addr, err)
	}
	return nil
}

// close stops the server and finishes every recording.
func (s *server) close() {
	s.rtsp.Close()
	s.mu.Lock()
	recs := make([]*recorder, 0, len(s.bySess))
	for _, r := range s.bySess {
		recs = append(recs, r)
	}
	s.bySess, s.byPath = map[*gortsplib.ServerSession]*recorder{}, map[string]*recorder{}
	s.mu.Unlock()
	for _, r := range recs {
		r.close()
	}
}

// validPath is a stream path usable as one folder name: letters, digits,
// '-', '_' and '.', not starting with '.', so no path can leave s.dir.
func validPath(p string) bool {
	if p == "" || len(p) > 128 || p[0] == '.' {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func badRequest(err error) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusBadRequest}, err
}

// OnAnnounce accepts a publisher with an H.264 track on a free path.
func (s *server) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	path := trimSlashes(ctx.Path)
	if !validPath(path) {
		return badRequest(fmt.Errorf("path %q: want letters, digits, '-', '_' or '.'", ctx.Path))
	}
	var forma *format.H264
	medi := ctx.Description.FindFormat(&forma)
	if medi == nil {
		return badRequest(errors.New("no H.264 track"))
	}
	dec, err := forma.CreateDecoder()
	if err != nil {
		return badRequest(fmt.Errorf("h264 depacketizer: %w", err))
	}
	dir := filepath.Join(s.dir, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, err
	}
	r := &recorder{dir: dir, prefix: time.Now().UTC().Format("20060102T150405.000000000"),
		segment: durationTicks(s.segment), part: durationTicks(s.part),
		sps: forma.SPS, pps: forma.PPS, media: medi, format: forma, dec: dec, logf: s.logf, path: path}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.byPath[path]; busy {
		return badRequest(fmt.Errorf("path %q is being published", path))
	}
	s.byPath[path] = r
	s.bySess[ctx.Session] = r
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup accepts the publisher's tracks; there is nothing to read.
func (s *server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStateInitial {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, errors.New("this server records and serves no streams")
	}
	return &base.Response{StatusCode: base.StatusOK}, nil, nil
}

// OnRecord starts writing the publisher's access units.
func (s *server) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	s.mu.Lock()
	r := s.bySess[ctx.Session]
	s.mu.Unlock()
	if r == nil {
		return badRequest(errors.New("RECORD without ANNOUNCE"))
	}
	sess := ctx.Session
	sess.OnPacketRTP(r.media, r.format, func(pkt *rtp.Packet) {
		pts, ok := sess.PacketPTS2(r.media, pkt)
		if !ok {
			return
		}
		au, err := r.dec.Decode(pkt)
		if err != nil {
			// Most often "more packets needed": the access unit is not
			// complete yet. A lost packet drops its access unit, as in
			// any recorder that reads RTP.
			return
		}
		r.writeAU(pts, au)
	})
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSessionClose finishes the session's recording.
func (s *server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s.mu.Lock()
	r := s.bySess[ctx.Session]
	delete(s.bySess, ctx.Session)
	if r != nil && s.byPath[r.path] == r {
		delete(s.byPath, r.path)
	}
	s.mu.Unlock()
	if r != nil {
		r.close()
	}
}

func trimSlashes(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p
}

// clockRate is H.264's RTP clock, also the MP4 track's time scale.
const clockRate = 90000

func durationTicks(d time.Duration) int64 { return int64(d) * clockRate / int64(time.Second) }

// recorder writes one stream as fMP4 segment files.
type recorder struct {
	dir, prefix, path string
	segment, part     int64 // in 90 kHz ticks
	media             *description.Media
	format            *format.H264
	dec               interface {
		Decode(*rtp.Packet) ([][]byte, error)
	}
	logf func(format string, args ...any)

	mu       sync.Mutex // the packet callback and the session's close
	closed   bool
	failed   bool
	sps, pps []byte
	dts      h264.DTSExtractor
	started  bool
	firstDTS int64

	f        *os.File
	segments int
	segStart int64
	seq      uint32
	partBase int64
	samples  []*fmp4.Sample
	// pending is the last access unit: its duration is known when the
	// next one arrives.
	pending    *fmp4.Sample
	pendingDTS int64
	buf        seekablebuffer.Buffer
}

// writeAU records one access unit with its presentation time (90 kHz).
func (r *recorder) writeAU(pts int64, au [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.failed {
		return
	}
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			r.sps = append(r.sps[:0:0], n...)
		case h264.NALUTypePPS:
			r.pps = append(r.pps[:0:0], n...)
		}
	}
	if !r.started {
		// A recording starts at a keyframe with its parameter sets.
		if !h264.IsRandomAccess(au) || r.sps == nil || r.pps == nil {
			return
		}
		r.dts.Initialize()
	}
	dts, err := r.dts.Extract(au, pts)
	if err != nil {
		r.logf("%s: dts: %v (access unit dropped)", r.path, err)
		return
	}
	if !r.started {
		r.started, r.firstDTS = true, dts
	}
	s := &fmp4.Sample{}
	if err := s.FillH264(int32(pts-dts), au); err != nil {
		r.logf("%s: %v (access unit dropped)", r.path, err)
		return
	}
	if r.pending != nil {
		r.pending.Duration = uint32(dts - r.pendingDTS)
		r.samples = append(r.samples, r.pending)
	}
	switch {
	case r.f == nil || !s.IsNonSyncSample && dts-r.segStart >= r.segment:
		if err := r.flushPart(); err == nil {
			err = r.openSegment(dts)
		}
		if err != nil {
			r.fail(err)
			return
		}
	case dts-r.partBase >= r.part:
		if err := r.flushPart(); err != nil {
			r.fail(err)
			return
		}
	}
	if len(r.samples) == 0 {
		r.partBase = dts
	}
	r.pending, r.pendingDTS = s, dts
}

func (r *recorder) fail(err error) {
	r.logf("%s: %v (recording stopped)", r.path, err)
	r.failed = true
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// openSegment closes the current file and starts the next with the
// stream's initialization section.
func (r *recorder) openSegment(dts int64) error {
	if r.f != nil {
		if err := r.f.Close(); err != nil {
			return err
		}
		r.f = nil
	}
	r.segments++
	name := filepath.Join(r.dir, fmt.Sprintf("%s-%06d.mp4", r.prefix, r.segments))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{ID: 1, TimeScale: clockRate, Codec: &fmp4.CodecH264{SPS: r.sps, PPS: r.pps}}}}
	r.buf.Reset()
	if err := init.Marshal(&r.buf); err != nil {
		f.Close()
		return fmt.Errorf("init: %w", err)
	}
	if _, err := f.Write(r.buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	r.f, r.segStart = f, dts
	return nil
}

// flushPart writes the samples gathered since the last fragment as one
// moof+mdat.
func (r *recorder) flushPart() error {
	if len(r.samples) == 0 {
		return nil
	}
	r.seq++
	p := fmp4.Part{SequenceNumber: r.seq, Tracks: []*fmp4.PartTrack{{ID: 1,
		BaseTime: uint64(r.partBase - r.firstDTS), Samples: r.samples}}}
	r.buf.Reset()
	if err := p.Marshal(&r.buf); err != nil {
		return fmt.Errorf("fragment: %w", err)
	}
	clear(r.samples)
	r.samples = r.samples[:0]
	_, err := r.f.Write(r.buf.Bytes())
	return err
}

// close writes the last access unit (with the previous one's duration)
// and closes the file.
func (r *recorder) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.failed || r.f == nil {
		return
	}
	if r.pending != nil {
		r.pending.Duration = clockRate / 30
		if n := len(r.samples); n > 0 {
			r.pending.Duration = r.samples[n-1].Duration
		}
		r.samples = append(r.samples, r.pending)
		r.pending = nil
	}
	if err := r.flushPart(); err != nil {
		r.logf("%s: last fragment: %v", r.path, err)
	}
	if err := r.f.Close(); err != nil {
		r.logf("%s: close: %v", r.path, err)
	}
	r.f = nil
}
