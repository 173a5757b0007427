package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"camvault/bench"
)

func startServer(t *testing.T) (*server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{dir: t.TempDir(), segment: 2 * time.Second, part: time.Second, logf: t.Logf}
	if err := s.start(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s, addr
}

func testClip(t *testing.T) *bench.Clip {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil && os.Getenv("CI") == "true" {
		t.Fatalf("ffmpeg libraries are required: %v", err)
	}
	clip, err := bench.MakeClip(4, "1M") // keyframe every 2 s
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

// publish sends n pictures of the clip ten times faster than real time
// (the client's write queue is bounded), with a 30 fps camera's
// timestamps.
func publish(t *testing.T, addr, path string, clip *bench.Clip, n int) {
	t.Helper()
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: clip.SPS, PPS: clip.PPS}
	medi := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{f}}
	tcp := gortsplib.TransportTCP
	cl := &gortsplib.Client{Transport: &tcp}
	if err := cl.StartRecording("rtsp://"+addr+"/"+path, &description.Session{Medias: []*description.Media{medi}}); err != nil {
		t.Fatal(err)
	}
	var seq uint16
	for i := 0; i < n; i++ {
		for _, p := range clip.Frames[i%len(clip.Frames)] {
			pkt := *p
			pkt.Timestamp = uint32(i * 90000 / clip.FPS)
			pkt.SequenceNumber = seq
			seq++
			if err := cl.WritePacketRTP(medi, &pkt); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second / time.Duration(10*clip.FPS))
	}
	// Let the write queue drain before TEARDOWN.
	time.Sleep(300 * time.Millisecond)
	cl.Close()
}

func waitClosed(t *testing.T, s *server, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.mu.Lock()
		_, open := s.byPath[path]
		s.mu.Unlock()
		if !open {
			return
		}
	}
	t.Fatalf("session on %s still open", path)
}

// TestRecordsKeyframeAlignedSegments publishes 5 s of a camera with a
// keyframe every 2 s and reads the files back with mediacommon's parser:
// three segments (0–2, 2–4, 4–5 s), each a valid fMP4 that starts with a
// keyframe, fragments of at most one second, and every picture recorded
// once.
func TestRecordsKeyframeAlignedSegments(t *testing.T) {
	clip := testClip(t)
	s, addr := startServer(t)
	const pictures = 150
	publish(t, addr, "cam1", clip, pictures)
	waitClosed(t, s, "cam1")

	files, err := filepath.Glob(filepath.Join(s.dir, "cam1", "*.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) != 3 {
		t.Fatalf("%d segment files, want 3: %v", len(files), files)
	}
	total := 0
	var next uint64
	for i, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var init fmp4.Init
		if err := init.Unmarshal(bytes.NewReader(b)); err != nil {
			t.Fatalf("%s: init: %v", name, err)
		}
		h, ok := init.Tracks[0].Codec.(*fmp4.CodecH264)
		if len(init.Tracks) != 1 || !ok || !bytes.Equal(h.SPS, clip.SPS) {
			t.Fatalf("%s: init tracks %+v, want one H.264 track with the camera's SPS", name, init.Tracks)
		}
		var parts fmp4.Parts
		if err := parts.Unmarshal(b); err != nil {
			t.Fatalf("%s: fragments: %v", name, err)
		}
		if len(parts) == 0 {
			t.Fatalf("%s: no fragments", name)
		}
		segSamples := 0
		for j, p := range parts {
			tr := p.Tracks[0]
			if tr.BaseTime != next {
				t.Fatalf("%s fragment %d: base time %d, want %d (continuous)", name, j, tr.BaseTime, next)
			}
			var d uint64
			for k, smp := range tr.Samples {
				if j == 0 && k == 0 && smp.IsNonSyncSample {
					t.Fatalf("%s: does not start with a keyframe", name)
				}
				d += uint64(smp.Duration)
			}
			if d > clockRate {
				t.Fatalf("%s fragment %d lasts %d ticks, over the 1 s part", name, j, d)
			}
			next += d
			segSamples += len(tr.Samples)
		}
		if want := []int{60, 60, 30}[i]; segSamples != want {
			t.Fatalf("%s: %d pictures, want %d", name, segSamples, want)
		}
		total += segSamples
	}
	if total != pictures {
		t.Fatalf("%d pictures recorded, %d sent", total, pictures)
	}
}

// TestRefusesHostilePublishers: a path that would leave the recording
// directory, a second publisher on a busy path and a stream without H.264
// are refused with an error, and the server goes on recording.
func TestRefusesHostilePublishers(t *testing.T) {
	clip := testClip(t)
	s, addr := startServer(t)
	h264f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: clip.SPS, PPS: clip.PPS}
	video := func() *description.Session {
		return &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{h264f}}}}
	}
	record := func(path string, desc *description.Session) (*gortsplib.Client, error) {
		tcp := gortsplib.TransportTCP
		cl := &gortsplib.Client{Transport: &tcp}
		return cl, cl.StartRecording("rtsp://"+addr+"/"+path, desc)
	}
	for _, path := range []string{"..", ".hidden", "a/../../b", "sp%20ace"} {
		if cl, err := record(path, video()); err == nil {
			cl.Close()
			t.Fatalf("path %q accepted", path)
		} else if !strings.Contains(err.Error(), "400") {
			t.Fatalf("path %q: %v, want 400", path, err)
		}
	}
	mjpeg := &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{&format.MJPEG{}}}}}
	if cl, err := record("cam2", mjpeg); err == nil {
		cl.Close()
		t.Fatal("a stream without H.264 accepted")
	}
	first, err := record("cam2", video())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if cl, err := record("cam2", video()); err == nil {
		cl.Close()
		t.Fatal("a second publisher on a busy path accepted")
	}
	publish(t, addr, "cam3", clip, 30)
	waitClosed(t, s, "cam3")
	files, _ := filepath.Glob(filepath.Join(s.dir, "cam3", "*.mp4"))
	if len(files) != 1 {
		t.Fatalf("after the refusals, cam3 recorded %d files, want 1", len(files))
	}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if n := e.Name(); n != "cam2" && n != "cam3" {
			t.Fatalf("unexpected entry %q in the recording directory", n)
		}
	}
}
