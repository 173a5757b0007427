package codec

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"camvault/media"
	"camvault/stages/segment"
)

func TestExportVP8OpusToH264AAC(t *testing.T) {
	c := loadVP8Clip(t)
	aus := c.accessUnits()
	init, segs, _ := recordClip(t, c, aus)
	stored := append([]byte(nil), init...)
	for _, seg := range segs {
		stored = append(stored, seg.Data...)
	}
	out := filepath.Join(t.TempDir(), "incident.mp4")
	if err := (Exporter{}).ExportMP4(context.Background(), stored, out); err != nil {
		t.Fatal(err)
	}
	if got := probe(t, out, "stream=codec_name,width,height"); got != "h264,320,240\naac\n" {
		t.Fatalf("export streams %q", got)
	}
	clipDur, _ := strconv.ParseFloat(strings.TrimSpace(probe(t, c.path, "format=duration")), 64)
	dur, err := strconv.ParseFloat(strings.TrimSpace(probe(t, out, "format=duration")), 64)
	if err != nil || dur < clipDur-0.1 || dur > clipDur+0.1 {
		t.Fatalf("export lasts %v s (%v), the clip %.3f s", dur, err, clipDur)
	}
	streams, err := ReadStreams(out)
	if err != nil {
		t.Fatal(err)
	}
	kept := c.kept(aus)
	if len(streams) != 2 || len(streams[0].Packets) != len(kept[0]) {
		t.Fatalf("export has %d streams, %d pictures; the session %d pictures", len(streams), len(streams[0].Packets), len(kept[0]))
	}
	if n := decodedPictures(t, out); n != len(kept[0]) {
		t.Fatalf("export decodes to %d pictures, want %d", n, len(kept[0]))
	}
	// 960 Opus samples per packet, in AAC frames of 1024 plus the
	// encoder's priming frame.
	samples := len(kept[1]) * 960
	if p := len(streams[1].Packets); p*1024 < samples || p*1024 > samples+3*1024 {
		t.Fatalf("%d AAC frames for %d Opus samples", p, samples)
	}
	for i, s := range streams {
		if d := s.End - s.Start; d < time.Duration((clipDur-0.1)*float64(time.Second)) || d > time.Duration((clipDur+0.1)*float64(time.Second)) {
			t.Fatalf("stream %d lasts %v", i, d)
		}
	}
}

func TestExportH264AACIsCopied(t *testing.T) {
	s := recordH264(t, 320, 240, 4, 60)
	stored := append([]byte(nil), s.init...)
	for _, seg := range s.segs {
		stored = append(stored, seg.Data...)
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(stored[len(s.init):]); err != nil {
		t.Fatal(err)
	}
	want := make([][][]byte, 2)
	for _, p := range parts {
		for _, tr := range p.Tracks {
			for _, sm := range tr.Samples {
				want[tr.ID-1] = append(want[tr.ID-1], sm.Payload)
			}
		}
	}
	out := filepath.Join(t.TempDir(), "incident.mp4")
	if err := (Exporter{}).ExportMP4(context.Background(), stored, out); err != nil {
		t.Fatal(err)
	}
	streams, err := ReadStreams(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2 || streams[0].Codec != "h264" || streams[1].Codec != "aac" {
		t.Fatalf("streams %+v", len(streams))
	}
	for i := range want {
		if len(streams[i].Packets) != len(want[i]) {
			t.Fatalf("stream %d: %d packets, stored %d", i, len(streams[i].Packets), len(want[i]))
		}
		for k := range want[i] {
			if !bytes.Equal(streams[i].Packets[k], want[i][k]) {
				t.Fatalf("stream %d packet %d is not the camera's", i, k)
			}
		}
	}
}

func TestExportRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	for i, in := range [][]byte{nil, []byte("not media"), {0x1a, 0x45, 0xdf, 0xa3, 0x80, 1, 2, 3}} {
		out := filepath.Join(dir, strconv.Itoa(i)+".mp4")
		if err := (Exporter{}).ExportMP4(context.Background(), in, out); err == nil {
			t.Fatalf("garbage %d exported", i)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("garbage %d: partial export left behind (%v)", i, err)
		}
	}
}

// decodedPictures is the number of pictures ffprobe decodes from a file's
// first video stream.
func decodedPictures(t *testing.T, file string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe %s: %q", file, out)
	}
	return n
}

// TestExportH264OpusCopiesVideoTranscodesAudio: a WebRTC camera sending
// H.264 and Opus is recorded as fMP4; its export keeps the camera's H.264
// packets and turns the Opus into AAC.
func TestExportH264OpusCopiesVideoTranscodesAudio(t *testing.T) {
	h := recordH264(t, 320, 240, 4, 60)
	c := loadVP8Clip(t)
	var opus [][]byte
	for _, p := range c.pkts {
		if p.stream == 1 && len(opus) < 4*50 {
			opus = append(opus, p.data)
		}
	}
	var sps, pps []byte
	for _, n := range h.pictures[0] {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	tracks := []media.Track{
		{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: sps, PPS: pps},
		{ID: 1, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: c.streams[1].channels},
	}
	sg, err := segment.New(tracks, segment.Config{})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := sg.Init()
	if err != nil {
		t.Fatal(err)
	}
	k := 0
	push := func(au *media.AccessUnit) {
		seg, err := sg.Push(au)
		if err != nil {
			t.Fatal(err)
		}
		if seg != nil {
			stored = append(stored, seg.Data...)
		}
	}
	base := time.Unix(1000, 0)
	for i, pic := range h.pictures {
		dts := int64(i) * 3000
		for ; k < len(opus) && int64(k)*960*90000 < dts*48000; k++ {
			push(&media.AccessUnit{Track: 1, DTS: int64(k) * 960, PTS: int64(k) * 960, Key: true, NALUs: [][]byte{opus[k]},
				Received: base.Add(time.Duration(k) * 20 * time.Millisecond)})
		}
		push(&media.AccessUnit{Track: 0, DTS: dts, PTS: dts, Key: i%60 == 0, NALUs: pic, Received: base.Add(time.Duration(i) * time.Second / 30)})
	}
	seg, err := sg.Flush()
	if err != nil {
		t.Fatal(err)
	}
	stored = append(stored, seg.Data...)

	out := filepath.Join(t.TempDir(), "incident.mp4")
	if err := (Exporter{}).ExportMP4(context.Background(), stored, out); err != nil {
		t.Fatal(err)
	}
	streams, err := ReadStreams(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2 || streams[0].Codec != "h264" || streams[1].Codec != "aac" {
		t.Fatalf("export streams %d", len(streams))
	}
	if len(streams[0].Packets) != len(h.pictures) {
		t.Fatalf("%d pictures exported, %d recorded", len(streams[0].Packets), len(h.pictures))
	}
	for i, p := range streams[0].Packets {
		var au h264.AVCC
		if err := au.Unmarshal(p); err != nil {
			t.Fatal(err)
		}
		if len(au) != len(h.pictures[i]) || !bytes.Equal(au[len(au)-1], h.pictures[i][len(h.pictures[i])-1]) {
			t.Fatalf("picture %d is not the camera's", i)
		}
	}
	samples := len(opus) * 960
	if p := len(streams[1].Packets); p*1024 < samples || p*1024 > samples+3*1024 {
		t.Fatalf("%d AAC frames for %d Opus samples", p, samples)
	}
	if d := streams[1].End - streams[1].Start; d < 3900*time.Millisecond || d > 4100*time.Millisecond {
		t.Fatalf("audio lasts %v", d)
	}
}
