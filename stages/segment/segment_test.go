package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"

	"camvault/internal/bufpool"
	"camvault/internal/testenv"
	"camvault/media"
)

// SPS/PPS of a 320x240 libx264 stream, so tests without ffmpeg can build
// a valid H.264 track.
var (
	testSPS = []byte{0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x81, 0xe2, 0x85, 0x49}
	testPPS = []byte{0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0}
)

func aacConfig(t testing.TB) []byte {
	t.Helper()
	b, err := mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 1}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func videoTrack() media.Track {
	return media.Track{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: testSPS, PPS: testPPS}
}

func audioTrack(t testing.TB, id int) media.Track {
	return media.Track{ID: id, Codec: media.CodecAAC, ClockRate: 48000, AudioConfig: aacConfig(t)}
}

// synthVideo is a fake picture: an IDR or non-IDR slice NAL unit whose body
// encodes i, so payload checks can tell pictures apart.
func synthVideo(i int, key bool, size int) *media.AccessUnit {
	nalu := make([]byte, max(size, 5))
	nalu[0] = 0x41
	if key {
		nalu[0] = 0x65
	}
	binary.BigEndian.PutUint32(nalu[1:], uint32(i))
	dts := int64(i) * 3000
	return &media.AccessUnit{Track: 0, PTS: dts, DTS: dts, Key: key, NALUs: [][]byte{nalu}, Received: time.Unix(1000, 0).Add(time.Duration(i) * time.Second / 30)}
}

func synthAudio(track, k int) *media.AccessUnit {
	frame := make([]byte, 64)
	binary.BigEndian.PutUint32(frame, uint32(k))
	dts := int64(k) * 1024
	return &media.AccessUnit{Track: track, PTS: dts, DTS: dts, Key: true, NALUs: [][]byte{frame}, Received: time.Unix(1000, 0).Add(time.Duration(dts) * time.Second / 48000)}
}

func mustNew(t testing.TB, tracks []media.Track, cfg Config) *Segmenter {
	t.Helper()
	s, err := New(tracks, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// feed pushes all units and the final flush, failing on any error.
func feed(t testing.TB, s *Segmenter, aus []*media.AccessUnit) []*Segment {
	t.Helper()
	var segs []*Segment
	for i, au := range aus {
		seg, err := s.Push(au)
		if err != nil {
			t.Fatalf("push %d (track %d dts %d): %v", i, au.Track, au.DTS, err)
		}
		if seg != nil {
			segs = append(segs, seg)
		}
	}
	seg, err := s.Flush()
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	if seg != nil {
		segs = append(segs, seg)
	}
	return segs
}

// parsedSample is a sample read back from the fragments, with its decode
// time on the output timeline.
type parsedSample struct {
	dts     int64
	payload []byte
	sync    bool
	seq     uint64
}

// parseBack unmarshals every segment with mediacommon, checks the structural
// invariants that hold for any stream, and returns the samples per fMP4
// track ID.
func parseBack(t testing.TB, segs []*Segment, exactTiming bool) map[int][]parsedSample {
	t.Helper()
	out := map[int][]parsedSample{}
	next := map[int]uint64{}
	for i, seg := range segs {
		if seg.Seq != uint64(i+1) {
			t.Fatalf("segment %d has Seq %d", i, seg.Seq)
		}
		if seg.End <= seg.Start {
			t.Fatalf("segment %d: End %v <= Start %v", seg.Seq, seg.End, seg.Start)
		}
		if i == 0 && seg.Start != 0 {
			t.Fatalf("first segment starts at %v", seg.Start)
		}
		if i > 0 && seg.Start != segs[i-1].End {
			t.Fatalf("segment %d starts at %v, previous ended at %v", seg.Seq, seg.Start, segs[i-1].End)
		}
		var parts fmp4.Parts
		if err := parts.Unmarshal(seg.Data); err != nil {
			t.Fatalf("segment %d: %v", seg.Seq, err)
		}
		if len(parts) != 1 || parts[0].SequenceNumber != uint32(seg.Seq) {
			t.Fatalf("segment %d: %d parts, sequence %d", seg.Seq, len(parts), parts[0].SequenceNumber)
		}
		// The fragment must be exactly what mediacommon would write for
		// the same samples.
		var buf seekablebuffer.Buffer
		if err := parts[0].Marshal(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), seg.Data) {
			t.Fatalf("segment %d differs from fmp4.Part.Marshal of its own samples", seg.Seq)
		}
		n := 0
		for _, pt := range parts[0].Tracks {
			if exactTiming {
				if want, ok := next[pt.ID]; ok && pt.BaseTime != want {
					t.Fatalf("segment %d track %d: base time %d, previous segment ended at %d", seg.Seq, pt.ID, pt.BaseTime, want)
				}
			}
			dts := pt.BaseTime
			for _, sm := range pt.Samples {
				out[pt.ID] = append(out[pt.ID], parsedSample{dts: int64(dts), payload: sm.Payload, sync: !sm.IsNonSyncSample, seq: seg.Seq})
				dts += uint64(sm.Duration)
				n++
			}
			next[pt.ID] = dts
		}
		if n != seg.Samples {
			t.Fatalf("segment %d: Samples = %d, fragment holds %d", seg.Seq, seg.Samples, n)
		}
	}
	return out
}

func avcc(t testing.TB, nalus [][]byte) []byte {
	t.Helper()
	b, err := h264.AVCC(nalus).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewRejects(t *testing.T) {
	v := videoTrack()
	a := audioTrack(t, 1)
	mod := func(tr media.Track, f func(*media.Track)) media.Track { f(&tr); return tr }
	cases := []struct {
		name   string
		tracks []media.Track
		cfg    Config
	}{
		{"no tracks", nil, Config{}},
		{"unsupported codec", []media.Track{mod(v, func(t *media.Track) { t.Codec = "vp9" })}, Config{}},
		{"vp8 without a container", []media.Track{mod(v, func(t *media.Track) { t.Codec = media.CodecVP8 })}, Config{}},
		{"no SPS", []media.Track{mod(v, func(t *media.Track) { t.SPS = nil })}, Config{}},
		{"no PPS", []media.Track{mod(v, func(t *media.Track) { t.PPS = nil })}, Config{}},
		{"garbage SPS", []media.Track{mod(v, func(t *media.Track) { t.SPS = []byte{0x67, 0xff} })}, Config{}},
		{"bad AAC config", []media.Track{mod(a, func(t *media.Track) { t.AudioConfig = []byte{0xff, 0xff} })}, Config{}},
		{"no AAC config", []media.Track{mod(a, func(t *media.Track) { t.AudioConfig = nil })}, Config{}},
		{"zero clock rate", []media.Track{mod(v, func(t *media.Track) { t.ClockRate = 0 })}, Config{}},
		{"negative clock rate", []media.Track{mod(a, func(t *media.Track) { t.ClockRate = -48000 })}, Config{}},
		{"absurd clock rate", []media.Track{mod(v, func(t *media.Track) { t.ClockRate = 1 << 40 })}, Config{}},
		{"opus 0 channels", []media.Track{{ID: 0, Codec: media.CodecOpus, ClockRate: 48000}}, Config{}},
		{"duplicate id", []media.Track{v, mod(a, func(t *media.Track) { t.ID = 0 })}, Config{}},
		{"negative id", []media.Track{mod(v, func(t *media.Track) { t.ID = -1 })}, Config{}},
		{"two video tracks", []media.Track{v, mod(v, func(t *media.Track) { t.ID = 1 })}, Config{}},
		{"max duration below target", []media.Track{v}, Config{Target: 4 * time.Second, MaxDuration: time.Second}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.tracks, c.cfg)
			if err == nil || s != nil {
				t.Fatalf("New = %v, %v; want error", s, err)
			}
			if !errors.Is(err, ErrInvalidTrack) && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v is neither ErrInvalidTrack nor ErrInvalidConfig", err)
			}
		})
	}
}

func TestInit(t *testing.T) {
	tracks := []media.Track{audioTrack(t, 3), videoTrack(), {ID: 5, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 2}}
	s := mustNew(t, tracks, Config{})
	b, err := s.Init()
	if err != nil {
		t.Fatal(err)
	}
	var init fmp4.Init
	if err := init.Unmarshal(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if len(init.Tracks) != 3 {
		t.Fatalf("%d tracks in init", len(init.Tracks))
	}
	for i, want := range []struct {
		id    int
		scale uint32
	}{{4, 48000}, {1, 90000}, {6, 48000}} {
		if got := init.Tracks[i]; got.ID != want.id || got.TimeScale != want.scale {
			t.Errorf("init track %d: id %d timescale %d, want %d %d", i, got.ID, got.TimeScale, want.id, want.scale)
		}
	}
	// The caller owns the returned bytes.
	b[0] ^= 0xff
	b2, _ := s.Init()
	if b2[0] == b[0] {
		t.Fatal("Init returned shared memory")
	}
}

func TestSyntheticVideoAudio(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack(), audioTrack(t, 1)}, Config{})
	var aus []*media.AccessUnit
	k := 0
	for i := 0; i < 300; i++ { // 10 s, keyframe every second
		aus = append(aus, synthVideo(i, i%30 == 0, 100))
		for ; int64(k)*1024*90000 < int64(i+1)*3000*48000; k++ {
			aus = append(aus, synthAudio(1, k))
		}
	}
	segs := feed(t, s, aus)
	if s.Dropped() != 0 {
		t.Fatalf("dropped %d", s.Dropped())
	}
	// Cuts at the keyframes at 2, 4, 6, 8 s.
	if len(segs) != 5 {
		t.Fatalf("%d segments, want 5", len(segs))
	}
	for i, seg := range segs[:4] {
		if seg.Start != time.Duration(2*i)*time.Second || seg.End != time.Duration(2*i+2)*time.Second {
			t.Errorf("segment %d covers [%v, %v)", seg.Seq, seg.Start, seg.End)
		}
	}
	got := parseBack(t, segs, true)
	if len(got[1]) != 300 || len(got[2]) != k {
		t.Fatalf("read back %d video, %d audio samples; fed 300, %d", len(got[1]), len(got[2]), k)
	}
	// Each segment counts its video frames apart from its audio frames.
	perSeg := map[uint64][2]int{}
	for track, samples := range got {
		for _, sm := range samples {
			c := perSeg[sm.seq]
			c[track-1]++
			perSeg[sm.seq] = c
		}
	}
	for _, seg := range segs {
		if c := perSeg[seg.Seq]; seg.VideoSamples != c[0] || seg.Samples-seg.VideoSamples != c[1] {
			t.Fatalf("segment %d: %d video of %d samples, fragment holds %d video and %d audio", seg.Seq, seg.VideoSamples, seg.Samples, c[0], c[1])
		}
	}
	for i, sm := range got[1] {
		if sm.dts != int64(i)*3000 || binary.BigEndian.Uint32(sm.payload[5:]) != uint32(i) {
			t.Fatalf("video sample %d: dts %d", i, sm.dts)
		}
		if sm.sync != (i%30 == 0) {
			t.Fatalf("video sample %d: sync %v", i, sm.sync)
		}
	}
	for j, sm := range got[2] {
		if sm.dts != int64(j)*1024 || binary.BigEndian.Uint32(sm.payload) != uint32(j) {
			t.Fatalf("audio sample %d: dts %d", j, sm.dts)
		}
		seg := segs[sm.seq-1]
		if at := ticksToDur(sm.dts, 48000); at < seg.Start || (sm.seq < uint64(len(segs)) && at >= seg.End) {
			t.Fatalf("audio sample %d at %v is in segment [%v, %v)", j, at, seg.Start, seg.End)
		}
	}
	for i, seg := range segs {
		if i > 0 && seg.Received.Before(segs[i-1].Received) {
			t.Fatal("Received went backwards")
		}
	}
	if want := time.Unix(1000, 0).Add(299 * time.Second / 30); !segs[4].Received.Equal(want) && segs[4].Received.Before(want) {
		t.Fatalf("last Received %v, want >= %v", segs[4].Received, want)
	}
}

func TestAudioOnlyCutsByDuration(t *testing.T) {
	s := mustNew(t, []media.Track{audioTrack(t, 0)}, Config{Target: time.Second})
	var aus []*media.AccessUnit
	for k := range 200 { // 4.27 s
		aus = append(aus, synthAudio(0, k))
	}
	segs := feed(t, s, aus)
	if len(segs) != 5 {
		t.Fatalf("%d segments, want 5", len(segs))
	}
	for _, seg := range segs[:4] {
		if d := seg.End - seg.Start; d < time.Second || d > time.Second+25*time.Millisecond {
			t.Errorf("segment %d lasts %v", seg.Seq, d)
		}
	}
	got := parseBack(t, segs, true)
	if len(got[1]) != 200 {
		t.Fatalf("%d samples back", len(got[1]))
	}
	for k, sm := range got[1] {
		if sm.dts != int64(k)*1024 || binary.BigEndian.Uint32(sm.payload) != uint32(k) {
			t.Fatalf("sample %d: dts %d", k, sm.dts)
		}
	}
}

func TestNeverKeyframeBuffersNothing(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack(), audioTrack(t, 1)}, Config{MaxDuration: 5 * time.Second})
	var err error
	i := 0
	for ; i < 1000 && err == nil; i++ {
		_, err = s.Push(synthVideo(i, false, 20000))
		if err == nil {
			_, err = s.Push(synthAudio(1, i))
		}
		if s.bytes != 0 || len(s.tracks[0].samples) != 0 || len(s.tracks[1].samples) != 0 {
			t.Fatalf("buffered %d bytes before any keyframe", s.bytes)
		}
	}
	if !errors.Is(err, ErrNoKeyframe) {
		t.Fatalf("err = %v, want ErrNoKeyframe", err)
	}
	// Audio runs at 48000/1024 frames per tick of this loop, so it is the
	// video track that hits 5 s first.
	if i < 150 || i > 152 {
		t.Fatalf("failed after %d pictures, want about 150 (5 s)", i)
	}
	if seg, err := s.Flush(); seg != nil || err != nil {
		t.Fatalf("Flush = %v, %v; want nothing", seg, err)
	}
	if _, err := s.Push(synthVideo(i, true, 10)); err == nil {
		t.Fatal("push after flush succeeded")
	}
}

func TestNoKeyframeMidStream(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack()}, Config{Target: time.Second, MaxDuration: 3 * time.Second})
	var segs []*Segment
	var err error
	i := 0
	for ; i < 1000; i++ {
		var seg *Segment
		seg, err = s.Push(synthVideo(i, i == 0 || i == 30, 1000))
		if err != nil {
			break
		}
		if seg != nil {
			segs = append(segs, seg)
		}
	}
	if !errors.Is(err, ErrNoKeyframe) {
		t.Fatalf("err = %v, want ErrNoKeyframe", err)
	}
	// The keyframe at frame 30 opened a segment; 3 s later (frame 120)
	// there is still none.
	if i != 121 {
		t.Fatalf("failed at picture %d, want 121", i)
	}
	if _, err2 := s.Push(synthVideo(i+1, true, 10)); !errors.Is(err2, ErrNoKeyframe) {
		t.Fatalf("push after failure: %v", err2)
	}
	// What was buffered before the failure is still valid footage.
	last, err := s.Flush()
	if err != nil || last == nil {
		t.Fatalf("Flush = %v, %v", last, err)
	}
	segs = append(segs, last)
	got := parseBack(t, segs, true)[1]
	if len(segs) != 2 || len(got) != 121 {
		t.Fatalf("%d segments, %d samples; want 2, 121", len(segs), len(got))
	}
	if !got[30].sync || got[30].seq != 2 {
		t.Fatal("second segment does not start with the keyframe")
	}
}

func TestTooLarge(t *testing.T) {
	t.Run("single unit", func(t *testing.T) {
		s := mustNew(t, []media.Track{videoTrack()}, Config{MaxBytes: 1 << 20})
		if _, err := s.Push(synthVideo(0, true, 2<<20)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
		if s.bytes != 0 {
			t.Fatal("huge unit was buffered")
		}
		if seg, _ := s.Flush(); seg != nil {
			t.Fatal("flush returned a segment")
		}
	})
	t.Run("no keyframe to cut at", func(t *testing.T) {
		s := mustNew(t, []media.Track{videoTrack()}, Config{MaxBytes: 1 << 20})
		var err error
		i := 0
		for ; i < 100 && err == nil; i++ {
			_, err = s.Push(synthVideo(i, i == 0, 100_000))
		}
		if !errors.Is(err, ErrTooLarge) || i != 11 {
			t.Fatalf("err = %v after %d units", err, i)
		}
		seg, err := s.Flush()
		if err != nil || seg == nil || seg.Samples != 10 {
			t.Fatalf("Flush = %+v, %v", seg, err)
		}
		parseBack(t, []*Segment{seg}, true)
	})
	t.Run("cut early at keyframe", func(t *testing.T) {
		// 30 KB pictures at 30 fps fill half of 1 MiB in well under the
		// 2 s target; the segmenter cuts at the next keyframe instead of
		// failing.
		s := mustNew(t, []media.Track{videoTrack()}, Config{MaxBytes: 1 << 20})
		var aus []*media.AccessUnit
		for i := range 300 {
			aus = append(aus, synthVideo(i, i%10 == 0, 30_000))
		}
		segs := feed(t, s, aus)
		for _, seg := range segs {
			if len(seg.Data) > 1<<20 {
				t.Fatalf("segment of %d bytes", len(seg.Data))
			}
		}
		if got := parseBack(t, segs, true)[1]; len(got) != 300 {
			t.Fatalf("%d samples back", len(got))
		}
	})
}

func TestDropsHostileUnits(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack(), audioTrack(t, 1)}, Config{})
	dropped := 0
	push := func(au *media.AccessUnit, keep bool) {
		t.Helper()
		if seg, err := s.Push(au); err != nil || seg != nil {
			t.Fatalf("push = %v, %v", seg, err)
		}
		if !keep {
			dropped++
		}
		if s.Dropped() != dropped {
			t.Fatalf("Dropped = %d, want %d", s.Dropped(), dropped)
		}
	}
	// The first keyframe is picture 1, at 3000 ticks of 90 kHz, which is
	// 1600 ticks of 48 kHz: the origin of the output timeline.
	push(synthAudio(1, 2), false)         // audio before the first keyframe
	push(synthVideo(0, false, 50), false) // video before it
	push(synthVideo(1, true, 50), true)
	push(synthAudio(1, 1), false) // 1024 < 1600: before the origin
	push(synthAudio(1, 2), true)
	push(synthAudio(1, 2), false) // DTS repeated
	push(synthAudio(1, 1), false) // DTS backwards
	push(synthVideo(2, false, 50), true)
	push(synthVideo(1, false, 50), false) // DTS backwards
	for _, id := range []int{7, -1, 1 << 30} {
		au := synthVideo(3, false, 50)
		au.Track = id
		push(au, false)
	}
	empty := synthVideo(3, false, 50)
	empty.NALUs = nil
	push(empty, false)
	empty = synthVideo(3, false, 50)
	empty.NALUs = [][]byte{{}, {}}
	push(empty, false)
	push(nil, false)
	wild := synthVideo(3, false, 50)
	wild.DTS = 1 << 62
	push(wild, false)
	wild = synthVideo(3, false, 50)
	wild.DTS = -1 << 62
	push(wild, false)
	wild = synthVideo(3, false, 50)
	wild.PTS = wild.DTS + 1<<33 // composition offset beyond int32
	push(wild, false)
	withEmpty := synthVideo(3, false, 50)
	withEmpty.NALUs = append([][]byte{{}}, withEmpty.NALUs...)
	push(withEmpty, true)
	push(synthAudio(1, 3), true)

	seg, err := s.Flush()
	if err != nil || seg == nil {
		t.Fatalf("Flush = %v, %v", seg, err)
	}
	got := parseBack(t, []*Segment{seg}, true)
	if len(got[1]) != 3 || len(got[2]) != 2 {
		t.Fatalf("read back %d video %d audio, want 3 and 2", len(got[1]), len(got[2]))
	}
	for i, sm := range got[1] {
		if sm.dts != int64(i)*3000 || binary.BigEndian.Uint32(sm.payload[5:]) != uint32(i+1) {
			t.Fatalf("video sample %d: dts %d", i, sm.dts)
		}
	}
	if !bytes.Equal(got[1][2].payload, avcc(t, withEmpty.NALUs[1:])) {
		t.Fatal("empty NAL unit not skipped")
	}
	if got[2][0].dts != 2048-1600 || got[2][1].dts != 3072-1600 {
		t.Fatalf("audio at %d, %d; want shifted by 1600", got[2][0].dts, got[2][1].dts)
	}
}

func TestTimestampJump(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack()}, Config{})
	if _, err := s.Push(synthVideo(0, true, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(synthVideo(30*60*60, true, 10)); !errors.Is(err, ErrTimestampJump) {
		t.Fatalf("err = %v, want ErrTimestampJump", err)
	}
}

// A track that stops sending must not hold back the other tracks' segments
// for more than the close wait; its late units are then dropped.
func TestDeadAudioTrack(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack(), audioTrack(t, 1)}, Config{})
	var segs []*Segment
	push := func(au *media.AccessUnit) {
		t.Helper()
		seg, err := s.Push(au)
		if err != nil {
			t.Fatal(err)
		}
		if seg != nil {
			segs = append(segs, seg)
		}
	}
	k := 0
	for i := 0; i < 90; i++ {
		push(synthVideo(i, i%60 == 0, 100))
		for ; i < 45 && int64(k)*1024*90000 < int64(i+1)*3000*48000; k++ {
			push(synthAudio(1, k))
		}
		if i == 60 && len(segs) != 0 {
			t.Fatal("segment emitted before the close wait")
		}
		if i == 75 && len(segs) != 1 {
			t.Fatalf("%d segments 500 ms after the cut, want 1", len(segs))
		}
	}
	before := s.Dropped()
	push(synthAudio(1, k+1)) // late for the emitted segment
	if s.Dropped() != before+1 {
		t.Fatal("late audio was not dropped")
	}
	last, err := s.Flush()
	if err != nil {
		t.Fatal(err)
	}
	got := parseBack(t, append(segs, last), false)
	if len(got[1]) != 90 || len(got[2]) != k {
		t.Fatalf("%d video %d audio samples, want 90 %d", len(got[1]), len(got[2]), k)
	}
}

// TestEmittedPayloadReleased: once a segment is emitted the segmenter
// keeps no reference to its payload, so 200 sessions do not each pin
// their largest segment.
func TestEmittedPayloadReleased(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack()}, Config{Target: time.Second})
	for i := range 200 {
		size := 1000
		if i < 30 {
			size = 500_000 // 15 MB in the first second
		}
		if _, err := s.Push(synthVideo(i, i%30 == 0, size)); err != nil {
			t.Fatal(err)
		}
	}
	tr := s.tracks[0]
	held := 0
	for _, sm := range tr.samples[:cap(tr.samples)] {
		if sm.nalus != nil {
			held += sm.size
		}
	}
	if held != s.bytes || held > 200_000 {
		t.Fatalf("segmenter references %d payload bytes (accounted %d) after the burst", held, s.bytes)
	}
}

func TestFlushEmpty(t *testing.T) {
	s := mustNew(t, []media.Track{videoTrack()}, Config{})
	if seg, err := s.Flush(); seg != nil || err != nil {
		t.Fatalf("Flush = %v, %v", seg, err)
	}
	if _, err := s.Push(synthVideo(0, true, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("push after flush: %v", err)
	}
}

// FuzzPush drives the segmenter with arbitrary units; whatever it accepts
// must come back out as well-formed fragments, and nothing may panic.
func FuzzPush(f *testing.F) {
	f.Add([]byte{0, 0, 1, 10, 1, 0, 5, 10, 0, 1, 100, 10, 0, 0, 100, 1})
	f.Add(bytes.Repeat([]byte{0, 1, 60, 40, 1, 0, 30, 20}, 40))
	f.Add([]byte{2, 1, 255, 255, 0, 0, 0, 0, 1, 1, 128, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		s := mustNew(t, []media.Track{videoTrack(), audioTrack(t, 1)}, Config{Target: 100 * time.Millisecond, MaxDuration: time.Second, MaxBytes: 4000})
		var segs []*Segment
		var dts [3]int64
		pushed, failed := 0, 0
		for len(ops) >= 4 {
			tr, step, flags, size := int(ops[0]%3), int64(int8(ops[1])), ops[2], int(ops[3])
			ops = ops[4:]
			dts[tr] += step * 300
			var au *media.AccessUnit
			if tr == 0 {
				au = synthVideo(0, flags&1 != 0, size)
				au.DTS, au.PTS = dts[0], dts[0]+int64(flags>>4)*3000
			} else {
				au = synthAudio(tr, 0)
				au.NALUs[0] = au.NALUs[0][:size%64]
				au.DTS, au.PTS = dts[tr], dts[tr]
			}
			pushed++
			seg, err := s.Push(au)
			if seg != nil {
				segs = append(segs, seg)
			}
			if err != nil {
				failed = 1 // the failing unit is neither kept nor counted as dropped
				break
			}
		}
		if seg, _ := s.Flush(); seg != nil {
			segs = append(segs, seg)
		}
		got := parseBack(t, segs, false)
		n := 0
		for _, seg := range segs {
			n += seg.Samples
		}
		if n != pushed-s.Dropped()-failed {
			t.Fatalf("%d samples out of %d pushed, %d dropped", n, pushed, s.Dropped())
		}
		if len(got[1]) > 0 && !got[1][0].sync {
			t.Fatal("video does not start on a keyframe")
		}
		for id, list := range got {
			for i := 1; i < len(list); i++ {
				if list[i].seq != list[i-1].seq && !list[i].sync && id == 1 {
					t.Fatalf("segment %d starts on a non-key picture", list[i].seq)
				}
			}
		}
	})
}

// Real media: libx264 and AAC made by ffmpeg, cut, and read back by
// ffprobe/ffmpeg.

type testClip struct {
	dir       string
	sps, pps  []byte
	video     [][][]byte // pictures, NAL units without AUD
	audioConf []byte
	audio     [][]byte
}

var (
	clipOnce sync.Once
	clipData *testClip
	clipErr  error
	clipDir  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "segment-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	clipDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needFFmpeg(t testing.TB) {
	t.Helper()
	testenv.Require(t, "ffmpeg", "ffprobe")
}

func loadClip(t testing.TB) *testClip {
	t.Helper()
	needFFmpeg(t)
	clipOnce.Do(func() { clipData, clipErr = makeClip(clipDir) })
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return clipData
}

func makeClip(dir string) (*testClip, error) {
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v", "-t", "7", "-c:v", "libx264", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
		"-bf", "0", "-pix_fmt", "yuv420p", "-bsf:v", "h264_metadata=aud=insert", "-f", "h264", filepath.Join(dir, "v.h264"),
		"-map", "1:a", "-t", "7", "-c:a", "aac", "-b:a", "64k", "-f", "adts", filepath.Join(dir, "a.aac"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	c := &testClip{dir: dir}
	raw, err := os.ReadFile(filepath.Join(dir, "v.h264"))
	if err != nil {
		return nil, err
	}
	for _, nalu := range splitAnnexB(raw) {
		switch h264.NALUType(nalu[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter:
			c.video = append(c.video, nil)
			continue
		case h264.NALUTypeSPS:
			c.sps = nalu
		case h264.NALUTypePPS:
			c.pps = nalu
		}
		if len(c.video) == 0 {
			return nil, fmt.Errorf("NAL unit before the first AUD")
		}
		c.video[len(c.video)-1] = append(c.video[len(c.video)-1], nalu)
	}
	raw, err = os.ReadFile(filepath.Join(dir, "a.aac"))
	if err != nil {
		return nil, err
	}
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(raw); err != nil {
		return nil, err
	}
	for _, p := range pkts {
		c.audio = append(c.audio, p.AU)
	}
	c.audioConf, err = mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelCount: pkts[0].ChannelCount}.Marshal()
	if err != nil {
		return nil, err
	}
	if len(c.video) != 210 || c.sps == nil || c.pps == nil || len(c.audio) < 320 {
		return nil, fmt.Errorf("unexpected clip: %d pictures, %d audio frames", len(c.video), len(c.audio))
	}
	return c, nil
}

func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+3 <= len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 { // zero_byte of a 4-byte start code
					end--
				}
				out = append(out, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// schedule interleaves pictures from firstFrame on with all audio frames as a
// camera would deliver them, audio shifted by lag in arrival time.
func (c *testClip) schedule(firstFrame int, lag time.Duration) []*media.AccessUnit {
	type ev struct {
		at time.Duration
		au *media.AccessUnit
	}
	base := time.Unix(5000, 0)
	var evs []ev
	for i := firstFrame; i < len(c.video); i++ {
		at := time.Duration(i) * time.Second / 30
		dts := int64(i) * 3000
		evs = append(evs, ev{at, &media.AccessUnit{Track: 0, PTS: dts, DTS: dts, Key: hasIDR(c.video[i]), NALUs: c.video[i], Received: base.Add(at)}})
	}
	for k, frame := range c.audio {
		dts := int64(k) * 1024
		at := time.Duration(dts)*time.Second/48000 + lag
		evs = append(evs, ev{at, &media.AccessUnit{Track: 1, PTS: dts, DTS: dts, Key: true, NALUs: [][]byte{frame}, Received: base.Add(at)}})
	}
	slices.SortStableFunc(evs, func(a, b ev) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.au.Track - b.au.Track
	})
	out := make([]*media.AccessUnit, len(evs))
	for i, e := range evs {
		out[i] = e.au
	}
	return out
}

func TestRealClip(t *testing.T) {
	c := loadClip(t)
	srcHashes := frameHashes(t, filepath.Join(c.dir, "v.h264"))
	if len(srcHashes) != len(c.video) {
		t.Fatalf("source decodes to %d frames", len(srcHashes))
	}
	for _, tc := range []struct {
		name       string
		firstFrame int
		lag        time.Duration
	}{
		{"audio late", 0, 150 * time.Millisecond},
		{"audio early", 0, -150 * time.Millisecond},
		{"join mid GOP", 10, 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tracks := []media.Track{
				{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: c.sps, PPS: c.pps},
				{ID: 1, Codec: media.CodecAAC, ClockRate: 48000, AudioConfig: c.audioConf},
			}
			s := mustNew(t, tracks, Config{})
			aus := c.schedule(tc.firstFrame, tc.lag)
			segs := feed(t, s, aus)

			// Which units should survive: everything from the first
			// keyframe on, in arrival order.
			firstKey := (tc.firstFrame + 59) / 60 * 60
			var wantVideo, wantAudio [][]byte
			started := false
			for _, au := range aus {
				if au.Track == 0 && au.DTS == int64(firstKey)*3000 {
					started = true
				}
				if !started {
					continue
				}
				if au.Track == 0 {
					wantVideo = append(wantVideo, avcc(t, au.NALUs))
				} else if au.DTS*90000 >= int64(firstKey)*3000*48000 {
					wantAudio = append(wantAudio, au.NALUs[0])
				}
			}
			if d := s.Dropped(); d != len(aus)-len(wantVideo)-len(wantAudio) {
				t.Fatalf("Dropped = %d, want %d", d, len(aus)-len(wantVideo)-len(wantAudio))
			}

			// Keyframes every 2 s: cuts at each one after the first.
			nkeys := (len(c.video) - firstKey + 59) / 60
			if len(segs) != nkeys {
				t.Fatalf("%d segments, want %d", len(segs), nkeys)
			}
			for _, seg := range segs[:len(segs)-1] {
				if seg.End-seg.Start != 2*time.Second {
					t.Errorf("segment %d covers [%v, %v)", seg.Seq, seg.Start, seg.End)
				}
			}
			got := parseBack(t, segs, true)
			if len(got[1]) != len(wantVideo) || len(got[2]) != len(wantAudio) {
				t.Fatalf("read back %d video %d audio, fed %d %d", len(got[1]), len(got[2]), len(wantVideo), len(wantAudio))
			}
			for i, sm := range got[1] {
				if !bytes.Equal(sm.payload, wantVideo[i]) || sm.dts != int64(i)*3000 {
					t.Fatalf("video sample %d differs (dts %d)", i, sm.dts)
				}
				if i == 0 || got[1][i-1].seq != sm.seq {
					if !sm.sync || !hasIDRAVCC(t, sm.payload) {
						t.Fatalf("segment %d does not start with an IDR picture", sm.seq)
					}
				}
			}
			for j, sm := range got[2] {
				if !bytes.Equal(sm.payload, wantAudio[j]) {
					t.Fatalf("audio sample %d differs", j)
				}
				if j > 0 && sm.dts != got[2][j-1].dts+1024 {
					t.Fatalf("audio sample %d at %d after %d", j, sm.dts, got[2][j-1].dts)
				}
				seg := segs[sm.seq-1]
				if at := ticksToDur(sm.dts, 48000); at < seg.Start || (int(sm.seq) < len(segs) && at >= seg.End) {
					t.Fatalf("audio at %v in segment [%v, %v)", at, seg.Start, seg.End)
				}
			}

			// The concatenation is a file FFmpeg plays: every picture fed
			// decodes to the same image as the source.
			file := filepath.Join(t.TempDir(), "out.mp4")
			init, _ := s.Init()
			all := append([]byte(nil), init...)
			for _, seg := range segs {
				all = append(all, seg.Data...)
			}
			if err := os.WriteFile(file, all, 0o600); err != nil {
				t.Fatal(err)
			}
			if n := probeFrames(t, file, "v:0"); n != len(wantVideo) {
				t.Fatalf("ffprobe counts %d video frames, want %d", n, len(wantVideo))
			}
			if n := probeFrames(t, file, "a:0"); n != len(wantAudio) {
				t.Fatalf("ffprobe counts %d audio frames, want %d", n, len(wantAudio))
			}
			if h := frameHashes(t, file); !slices.Equal(h, srcHashes[firstKey:]) {
				t.Fatalf("decoded frames differ from the source (%d vs %d frames)", len(h), len(srcHashes)-firstKey)
			}
		})
	}
}

func hasIDRAVCC(t testing.TB, payload []byte) bool {
	var au h264.AVCC
	if err := au.Unmarshal(payload); err != nil {
		t.Fatal(err)
	}
	return hasIDR(au)
}

func probeFrames(t testing.TB, file, stream string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", stream,
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe output %q", out)
	}
	return n
}

// frameHashes decodes the first video stream and returns each frame's MD5.
func frameHashes(t testing.TB, file string) []string {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", file, "-map", "0:v:0", "-f", "framemd5", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg framemd5 %s: %v", file, err)
	}
	var hashes []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		hashes = append(hashes, strings.TrimSpace(f[len(f)-1]))
	}
	return hashes
}

// BenchmarkPush: one video frame (and the audio frames of its time) into
// the segmenter, segments cut every 2 s and their buffers returned to the
// pool as the seal stage returns them, so B/op and allocs/op are what
// segmenting itself allocates per frame.
func BenchmarkPush(b *testing.B) {
	// One 4 Mbit/s camera: 30 fps, a keyframe every 2 s, AAC at 48 kHz.
	s := mustNew(b, []media.Track{videoTrack(), audioTrack(b, 1)}, Config{})
	const frame = 4_000_000 / 8 / 30
	pics := []*media.AccessUnit{synthVideo(0, true, 4*frame), synthVideo(1, false, frame)}
	audio := synthAudio(1, 0)
	per := 4*frame/60 + frame*59/60 + len(audio.NALUs[0])*48000/1024/30
	b.SetBytes(int64(per))
	b.ReportAllocs()
	k := 0
	for i := 0; b.Loop(); i++ {
		v := *pics[min(i%60, 1)]
		v.DTS, v.PTS = int64(i)*3000, int64(i)*3000
		seg, err := s.Push(&v)
		if err != nil {
			b.Fatal(err)
		}
		if seg != nil {
			bufpool.Put(seg.Data) // as the seal stage does once it has sealed the segment
		}
		for ; int64(k)*1024*90000 < int64(i+1)*3000*48000; k++ {
			a := *audio
			a.DTS, a.PTS = int64(k)*1024, int64(k)*1024
			seg, err := s.Push(&a) // the audio that completes a cut returns the segment
			if err != nil {
				b.Fatal(err)
			}
			if seg != nil {
				bufpool.Put(seg.Data)
			}
		}
	}
}
