package whip

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"camvault/bench"
	"camvault/camera"
	"camvault/ingest"
	"camvault/media"
)

// pathRecorder keeps what a publisher hands on, for tests that drive its
// packet path directly: no network, so no timing.
type pathRecorder struct {
	mu   sync.Mutex
	pts  []int64
	gaps []string
}

func (r *pathRecorder) StartSession(context.Context, camera.Camera, []media.Track, string) (ingest.Session, error) {
	return r, nil
}

func (r *pathRecorder) WriteAccessUnit(au *media.AccessUnit) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pts = append(r.pts, au.PTS)
	return nil
}

func (r *pathRecorder) Lost(_ int, _, _ int64, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gaps = append(r.gaps, note)
}

func (r *pathRecorder) End(string, error) {}

// pathPublisher is a publisher of one H.264 track wired to rec, as
// negotiate would leave it, without a peer connection.
func pathPublisher(t *testing.T, rec *pathRecorder) (*publisher, *rtcTrack) {
	t.Helper()
	cfg := Config{}
	cfg.defaults()
	s := &Server{cfg: cfg, recorder: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil)), ctx: context.Background(),
		resources: map[string]*publisher{}}
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	tr, d, err := ingest.NewTrack(0, f)
	if err != nil {
		t.Fatal(err)
	}
	in := &rtcTrack{id: 0, format: f, d: d, reorder: ingest.NewReorderBuffer(cfg.ReorderWait, 4096), loss: ingest.TrackLoss{Video: true}}
	p := &publisher{s: s, cam: camera.Camera{ID: "cam1"}, done: make(chan struct{}), tracks: []media.Track{tr}, inputs: []*rtcTrack{in}}
	p.pts.Initialize()
	return p, in
}

// feed hands one picture's packets, stamped ts and numbered on from seq,
// to p as its track reader would.
func feed(p *publisher, in *rtcTrack, seq *uint16, ts uint32, pkts []*rtp.Packet) {
	now := time.Now()
	for _, src := range pkts {
		pkt := *src
		pkt.Timestamp, pkt.SequenceNumber = ts, *seq
		*seq++
		p.mu.Lock()
		p.deliver(in, in.reorder.Push(&pkt, now), now)
		p.mu.Unlock()
	}
}

// A payload the depacketizer cannot decode (here a NAL unit of a type no
// encoder writes, in place of a picture) loses that picture and the ones
// that refer to it up to the next keyframe: a gap that says why, never
// pictures silently missing.
func TestUndecodablePayloadIsAGap(t *testing.T) {
	c, err := bench.MakeClip(3, "1M")
	if err != nil {
		t.Fatal(err)
	}
	rec := &pathRecorder{}
	p, in := pathPublisher(t, rec)
	const bad = 10
	var seq uint16
	for i := 0; i < 3*c.FPS; i++ {
		pkts := c.Frames[i%len(c.Frames)]
		if i == bad {
			pkts = []*rtp.Packet{{Header: rtp.Header{Marker: true}, Payload: []byte{0x00, 0x01, 0x02}}}
		}
		feed(p, in, &seq, uint32(i*90000/c.FPS), pkts)
	}
	p.finish(ingest.EndTeardown, nil)
	gop := 2 * c.FPS // the clip's keyframe interval
	if want := 3*c.FPS - (gop - bad); len(rec.pts) != want {
		t.Fatalf("%d pictures recorded, want %d: all but %d up to the next keyframe", len(rec.pts), want, bad)
	}
	if len(rec.gaps) != 1 || !strings.Contains(rec.gaps[0], "undecodable") {
		t.Fatalf("gaps %q, want one naming the undecodable payload", rec.gaps)
	}
}

// A picture whose last packet never comes, with nothing after it, is a gap
// at the session's end; a picture that ends with its marker packet is not.
func TestOpenPictureAtTheEndIsAGap(t *testing.T) {
	c, err := bench.MakeClip(1, "1M")
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []bool{false, true} {
		rec := &pathRecorder{}
		p, in := pathPublisher(t, rec)
		var seq uint16
		n := len(c.Frames)
		for i := 0; i < n; i++ {
			pkts := c.Frames[i]
			if cut && i == n-1 {
				if len(pkts) < 2 {
					t.Fatalf("the last picture has %d packet(s)", len(pkts))
				}
				pkts = pkts[:len(pkts)-1]
			}
			feed(p, in, &seq, uint32(i*90000/c.FPS), pkts)
		}
		p.finish(ingest.EndTeardown, nil)
		switch {
		case !cut && (len(rec.pts) != n || len(rec.gaps) != 0):
			t.Fatalf("whole stream: %d of %d pictures, gaps %q", len(rec.pts), n, rec.gaps)
		case cut && (len(rec.pts) != n-1 || len(rec.gaps) != 1 || !strings.Contains(rec.gaps[0], "last picture")):
			t.Fatalf("last packet cut: %d of %d pictures, gaps %q; want all but the last and a gap for it", len(rec.pts), n, rec.gaps)
		}
	}
}

// Padding-only packets (a sender probing bandwidth between pictures) carry
// no media: not a loss, and the pictures around them are recorded whole.
func TestPaddingIsNotALoss(t *testing.T) {
	c, err := bench.MakeClip(1, "1M")
	if err != nil {
		t.Fatal(err)
	}
	rec := &pathRecorder{}
	p, in := pathPublisher(t, rec)
	var seq uint16
	for i, pkts := range c.Frames {
		padding := &rtp.Packet{Header: rtp.Header{Padding: true}, PaddingSize: 200}
		feed(p, in, &seq, uint32(i*90000/c.FPS), append(pkts[:len(pkts):len(pkts)], padding))
	}
	p.finish(ingest.EndTeardown, nil)
	if len(rec.pts) != len(c.Frames) || len(rec.gaps) != 0 {
		t.Fatalf("%d of %d pictures, gaps %q", len(rec.pts), len(c.Frames), rec.gaps)
	}
}
