package fmp4

import (
	"bytes"
	"errors"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"

	"camvault/format/container"
	"camvault/media"
)

var (
	testSPS = []byte{0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x81, 0xe2, 0x85, 0x49}
	testPPS = []byte{0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0}
)

func testTracks() []media.Track {
	return []media.Track{
		{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: testSPS, PPS: testPPS},
		{ID: 1, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 2},
	}
}

// The writer's fragment is exactly what mediacommon writes for the same
// samples, and the reader gives back each sample's payload as stored
// (AVCC for H.264).
func TestWriterMatchesMediacommonAndReadsBack(t *testing.T) {
	w, err := NewWriter(testTracks())
	if err != nil {
		t.Fatal(err)
	}
	init, _ := w.Init()
	codecs, err := TrackCodecs(init)
	if err != nil || len(codecs) != 2 || codecs[0] != "h264" || codecs[1] != "opus" {
		t.Fatalf("TrackCodecs: %q, %v", codecs, err)
	}
	video := []container.Sample{
		{DTS: 0, PTSOffset: 3000, Duration: 3000, Key: true, Data: [][]byte{{0x65, 1, 2}, nil, {0x06, 9}}},
		{DTS: 3000, Duration: 3000, Data: [][]byte{{0x41, 3}}},
	}
	audio := []container.Sample{{DTS: 0, Duration: 960, Key: true, Data: [][]byte{{0xfc, 1}}}, {DTS: 960, Duration: 960, Key: true, Data: [][]byte{{0xfc, 2}}}}
	seg, err := w.Marshal(7, [][]container.Sample{video, audio})
	if err != nil {
		t.Fatal(err)
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(seg); err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || parts[0].SequenceNumber != 7 || len(parts[0].Tracks) != 2 {
		t.Fatalf("%d parts", len(parts))
	}
	var buf seekablebuffer.Buffer
	if err := parts[0].Marshal(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), seg) {
		t.Fatal("fragment differs from fmp4.Part.Marshal of its own samples")
	}
	// A track without samples has no traf.
	only, _ := w.Marshal(8, [][]container.Sample{nil, audio})
	parts = nil
	if err := parts.Unmarshal(only); err != nil || len(parts[0].Tracks) != 1 || parts[0].Tracks[0].ID != 2 {
		t.Fatalf("audio-only fragment: %v", err)
	}

	got, err := Samples(init, append(append([]byte(nil), seg...), only...))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"\x00\x00\x00\x03\x65\x01\x02\x00\x00\x00\x02\x06\x09", "\x00\x00\x00\x02\x41\x03"},
		{"\xfc\x01", "\xfc\x02", "\xfc\x01", "\xfc\x02"},
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("track %d: %d samples", i, len(got[i]))
		}
		for k := range want[i] {
			if string(got[i][k]) != want[i][k] {
				t.Fatalf("track %d sample %d: %x", i, k, got[i][k])
			}
		}
	}
}

func TestNewWriterRefuses(t *testing.T) {
	for name, tr := range map[string]media.Track{
		"vp8":          {Codec: media.CodecVP8, ClockRate: 90000},
		"opus 6ch":     {Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 6},
		"bad aac conf": {Codec: media.CodecAAC, ClockRate: 48000, AudioConfig: []byte{0xff}},
	} {
		if _, err := NewWriter([]media.Track{tr}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	if _, err := NewWriter([]media.Track{{Codec: media.CodecH264, ClockRate: 90000, SPS: []byte{0x67}, PPS: testPPS}}); err == nil {
		t.Error("an unparsable SPS made an init segment")
	}
}
