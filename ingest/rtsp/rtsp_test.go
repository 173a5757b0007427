package rtsp

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"

	"camvault/bench"
	"camvault/camera"
	"camvault/ingest"
	"camvault/media"
)

func TestReplayGuard(t *testing.T) {
	var td trackDepack
	for _, tc := range []struct {
		seq  uint16
		want bool
	}{{100, true}, {101, true}, {101, false}, {99, false}, {105, true}, {65535, false}, {200, true}} {
		if got, _ := td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: tc.seq}}); got != tc.want {
			t.Errorf("seq %d: accept %v, want %v", tc.seq, got, tc.want)
		}
	}
	// Wrap-around is progress, not a replay.
	td = trackDepack{}
	td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: 65535}})
	if ok, lost := td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: 0}}); !ok || lost != 0 {
		t.Fatal("sequence wrap-around refused")
	}
}

// lossRecorder keeps what the server hands on, for tests that drive the
// packet path directly (no network, so no timing).
type lossRecorder struct {
	pts  []int64
	gaps []string
}

func (r *lossRecorder) StartSession(context.Context, camera.Camera, []media.Track, string) (ingest.Session, error) {
	return r, nil
}
func (r *lossRecorder) WriteAccessUnit(au *media.AccessUnit) error {
	r.pts = append(r.pts, au.PTS)
	return nil
}
func (r *lossRecorder) Lost(_ int, _, _ int64, note string) { r.gaps = append(r.gaps, note) }
func (r *lossRecorder) End(string, error)                   {}

// A packet missing from the sequence (lost over UDP, or a camera that
// skipped it) loses its picture and the ones that refer to it, up to the
// next keyframe: one gap that says so, never pictures silently broken or
// missing. Packets after the hole are not mistaken for a replay.
func TestMissingPacketIsAGap(t *testing.T) {
	c, err := bench.MakeClip(3, "1M")
	if err != nil {
		t.Fatal(err)
	}
	for _, drop := range []bool{false, true} {
		rec := &lossRecorder{}
		s := &Server{recorder: rec, log: slog.New(slog.NewTextHandler(io.Discard, nil)), ctx: context.Background()}
		f := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
		tr, d, err := ingest.NewTrack(0, f)
		if err != nil {
			t.Fatal(err)
		}
		td := &trackDepack{id: 0, d: d, loss: ingest.TrackLoss{Track: 0, Video: true}}
		p := &publisher{cam: camera.Camera{ID: "cam1"}, tracks: []media.Track{tr}}
		const hole = 10 // the picture that loses a packet
		var seq uint16
		for i := 0; i < 3*c.FPS; i++ {
			for k, src := range c.Frames[i%len(c.Frames)] {
				pkt := *src
				pkt.SequenceNumber = seq
				seq++
				if drop && i == hole && k == 0 {
					continue
				}
				ok, lost := td.accept(&pkt)
				if !ok {
					t.Fatalf("picture %d: packet %d refused", i, pkt.SequenceNumber)
				}
				s.deliver(p, td, &pkt, int64(i*90000/c.FPS), lost, time.Now())
			}
		}
		td.loss.End(p.session)
		gop := 2 * c.FPS // the clip's keyframe interval
		switch {
		case p.failure != nil:
			t.Fatalf("drop %v: session failed: %v", drop, p.failure)
		case !drop && (len(rec.pts) != 3*c.FPS || len(rec.gaps) != 0):
			t.Fatalf("whole stream: %d of %d pictures, gaps %q", len(rec.pts), 3*c.FPS, rec.gaps)
		case drop && len(rec.pts) != 3*c.FPS-(gop-hole):
			t.Fatalf("%d pictures recorded, want %d: all but %d up to the next keyframe", len(rec.pts), 3*c.FPS-(gop-hole), hole)
		case drop && (len(rec.gaps) != 1 || !strings.Contains(rec.gaps[0], "1 RTP packet(s) of track 0 lost")):
			t.Fatalf("gaps %q, want one naming the lost packet", rec.gaps)
		}
	}
}
