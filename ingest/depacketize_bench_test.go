package ingest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"camvault/internal/testenv"
)

// rtpClip is a camera's H.264 stream as RTP packets (an IDR every 2 s,
// 720p30 at 4 Mbit/s, made by the ffmpeg CLI) with each packet's
// presentation time (90 kHz).
type rtpClip struct {
	pkts []*rtp.Packet
	pts  []int64
	dur  int64 // the clip's length, 90 kHz
	sps  []byte
	pps  []byte
}

func makeRTPClip(b *testing.B) *rtpClip {
	b.Helper()
	testenv.Require(b, "ffmpeg")
	path := filepath.Join(b.TempDir(), "cam.h264")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t", "-t", "4",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "0",
		"-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M", "-pix_fmt", "yuv420p", "-f", "h264", path).CombinedOutput()
	if err != nil {
		b.Fatalf("ffmpeg: %v: %s", err, out)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(raw); err != nil {
		b.Fatal(err)
	}
	c := &rtpClip{}
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	enc, err := f.CreateEncoder()
	if err != nil {
		b.Fatal(err)
	}
	var au [][]byte
	frame := int64(0)
	for _, n := range nalus {
		typ := h264.NALUType(n[0] & 0x1f)
		switch typ {
		case h264.NALUTypeSPS:
			c.sps = n
		case h264.NALUTypePPS:
			c.pps = n
		}
		au = append(au, n)
		if typ != h264.NALUTypeIDR && typ != h264.NALUTypeNonIDR {
			continue
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range pkts {
			p.Timestamp = uint32(frame * 3000)
			c.pkts = append(c.pkts, p)
			c.pts = append(c.pts, frame*3000)
		}
		au = nil
		frame++
	}
	c.dur = frame * 3000
	return c
}

// BenchmarkH264Depacketize: one RTP packet of a 4 Mbit/s 720p30 camera
// into the depacketizer, and out as access units, per op: allocs/op is
// allocations per packet on camvault's side of the RTSP read path (the
// transport's own reading and RTP parsing are gortsplib's).
func BenchmarkH264Depacketize(b *testing.B) {
	c := makeRTPClip(b)
	_, d, err := NewTrack(0, &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.sps, PPS: c.pps})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	aus := 0
	b.ReportAllocs()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ResetTimer()
	for i := range b.N {
		k := i % len(c.pkts)
		pts := int64(i/len(c.pkts))*c.dur + c.pts[k]
		out, err := d.Decode(c.pkts[k], pts, now)
		if err != nil {
			b.Fatal(err)
		}
		aus += len(out)
	}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	// allocs/op rounds to a whole number; below one per packet the
	// exact figure is what tells a change apart.
	allocs := float64(m1.Mallocs - m0.Mallocs)
	b.ReportMetric(allocs/float64(b.N), "allocs/packet")
	b.ReportMetric(allocs/float64(max(aus, 1)), "allocs/au")
	b.ReportMetric(float64(b.N)/float64(max(aus, 1)), "packets/au")
}
