package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"camvault/format/container"
	"camvault/format/webm"
	"camvault/media"
)

// fakeContainer keeps what the Segmenter hands it.
type fakeContainer struct {
	segs  [][][]container.Sample
	fail  error
	calls int
}

func (f *fakeContainer) Init() ([]byte, error) { return []byte("webm init"), nil }

func (f *fakeContainer) Marshal(seq uint64, tracks [][]container.Sample) ([]byte, error) {
	f.calls++
	if f.fail != nil {
		return nil, f.fail
	}
	cp := make([][]container.Sample, len(tracks))
	for i, tr := range tracks {
		cp[i] = append([]container.Sample(nil), tr...)
	}
	f.segs = append(f.segs, cp)
	return []byte(fmt.Sprintf("segment %d", seq)), nil
}

func vp8Track() media.Track {
	return media.Track{ID: 0, Codec: media.CodecVP8, ClockRate: 90000, Width: 320, Height: 240}
}

func opusTrack(id int) media.Track {
	return media.Track{ID: id, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 2}
}

// synthVP8 is a fake VP8 frame whose header is real: a keyframe tag,
// start code and a 320x240 size, or an interframe tag; the body encodes i.
func synthVP8(i int, key bool, size int) *media.AccessUnit {
	f := make([]byte, max(size, 14))
	if key {
		copy(f, []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00})
	} else {
		copy(f, []byte{0x31, 0x01, 0x00})
	}
	binary.BigEndian.PutUint32(f[10:], uint32(i))
	dts := int64(i) * 3000
	return &media.AccessUnit{Track: 0, PTS: dts, DTS: dts, Key: key, NALUs: [][]byte{f}, Received: time.Unix(1000, 0).Add(time.Duration(i) * time.Second / 30)}
}

func synthOpus(track, k int) *media.AccessUnit {
	frame := make([]byte, 40)
	binary.BigEndian.PutUint32(frame, uint32(k))
	dts := int64(k) * 960
	return &media.AccessUnit{Track: track, PTS: dts, DTS: dts, Key: true, NALUs: [][]byte{frame}, Received: time.Unix(1000, 0).Add(time.Duration(dts) * time.Second / 48000)}
}

func TestVP8CutsAtKeyframes(t *testing.T) {
	fc := &fakeContainer{}
	s := mustNew(t, []media.Track{vp8Track(), opusTrack(1)}, Config{Container: fc})
	if b, _ := s.Init(); string(b) != "webm init" {
		t.Fatalf("Init = %q, not the container's", b)
	}
	var aus []*media.AccessUnit
	k := 0
	for i := range 300 { // 10 s, a keyframe every second
		aus = append(aus, synthVP8(i, i%30 == 0, 200))
		for ; int64(k)*960*90000 < int64(i+1)*3000*48000; k++ {
			aus = append(aus, synthOpus(1, k))
		}
	}
	segs := feed(t, s, aus)
	if s.Dropped() != 0 {
		t.Fatalf("dropped %d", s.Dropped())
	}
	if len(segs) != 5 || len(fc.segs) != 5 {
		t.Fatalf("%d segments, %d container calls; want 5", len(segs), len(fc.segs))
	}
	var video, audio []container.Sample
	for i, seg := range segs {
		if string(seg.Data) != fmt.Sprintf("segment %d", seg.Seq) {
			t.Fatalf("segment %d carries %q, not the container's bytes", seg.Seq, seg.Data)
		}
		if i < 4 && (seg.Start != time.Duration(2*i)*time.Second || seg.End != time.Duration(2*i+2)*time.Second) {
			t.Errorf("segment %d covers [%v, %v)", seg.Seq, seg.Start, seg.End)
		}
		tr := fc.segs[i]
		if len(tr) != 2 || len(tr[0])+len(tr[1]) != seg.Samples {
			t.Fatalf("segment %d: %d samples handed over, Samples = %d", seg.Seq, len(tr[0])+len(tr[1]), seg.Samples)
		}
		first := tr[0][0]
		if _, _, ok := webm.VP8KeyframeSize(first.Data[0]); !ok || !first.Key {
			t.Fatalf("segment %d does not start with a VP8 keyframe", seg.Seq)
		}
		if at := ticksToDur(first.DTS, 90000); at != seg.Start {
			t.Fatalf("segment %d's keyframe at %v, segment starts at %v", seg.Seq, at, seg.Start)
		}
		for _, a := range tr[1] {
			if at := ticksToDur(a.DTS, 48000); at < seg.Start || (i < 4 && at >= seg.End) {
				t.Fatalf("audio at %v in segment [%v, %v)", at, seg.Start, seg.End)
			}
		}
		video = append(video, tr[0]...)
		audio = append(audio, tr[1]...)
	}
	if len(video) != 300 || len(audio) != k {
		t.Fatalf("%d pictures, %d audio frames handed over; fed 300, %d", len(video), len(audio), k)
	}
	for i, sm := range video {
		// The payload is handed over as it came: no length prefix.
		if sm.DTS != int64(i)*3000 || sm.Duration != 3000 || binary.BigEndian.Uint32(sm.Data[0][10:]) != uint32(i) || len(sm.Data[0]) != 200 {
			t.Fatalf("picture %d: dts %d duration %d", i, sm.DTS, sm.Duration)
		}
		if sm.Key != (i%30 == 0) {
			t.Fatalf("picture %d: key %v", i, sm.Key)
		}
	}
	for j, sm := range audio {
		if sm.DTS != int64(j)*960 || binary.BigEndian.Uint32(sm.Data[0]) != uint32(j) || !sm.Key {
			t.Fatalf("audio frame %d: dts %d", j, sm.DTS)
		}
	}
}

// TestVP8DropsCorruptFrames: truncated or garbage VP8 frames are dropped
// and counted, never open a session or a segment, and never panic.
func TestVP8DropsCorruptFrames(t *testing.T) {
	fc := &fakeContainer{}
	s := mustNew(t, []media.Track{vp8Track()}, Config{Container: fc, Target: time.Second})
	at := func(au *media.AccessUnit, i int) *media.AccessUnit {
		au.DTS, au.PTS = int64(i)*3000, int64(i)*3000
		return au
	}
	key := synthVP8(0, true, 20).NALUs[0]
	badCode := bytes.Clone(key)
	badCode[3] = 0
	corrupt := [][][]byte{
		nil, {}, {nil}, {{}}, {{0x10}}, {{0x10, 0x02}}, // no complete tag
		{key[:5]}, {key[:9]}, {badCode}, // keyframe tag, broken header
		{key, key}, // a VP8 unit is one frame
	}
	i := 0
	for _, c := range corrupt { // before the first keyframe: nothing starts
		if seg, err := s.Push(at(&media.AccessUnit{Track: 0, NALUs: c}, i)); seg != nil || err != nil {
			t.Fatalf("corrupt frame %d: %v %v", i, seg, err)
		}
		i++
	}
	if s.started || s.Dropped() != len(corrupt) {
		t.Fatalf("started %v, dropped %d of %d corrupt frames", s.started, s.Dropped(), len(corrupt))
	}
	var segs []*Segment
	push := func(au *media.AccessUnit) {
		seg, err := s.Push(au)
		if err != nil {
			t.Fatal(err)
		}
		if seg != nil {
			segs = append(segs, seg)
		}
	}
	for n := 0; n < 60; n, i = n+1, i+1 {
		push(at(synthVP8(i, n == 0, 30), i))
	}
	// Where a keyframe would cut, corrupt ones do not.
	for _, c := range corrupt {
		push(at(&media.AccessUnit{Track: 0, NALUs: c}, i))
		i++
	}
	push(at(synthVP8(i, false, 30), i))
	i++
	if len(segs) != 0 {
		t.Fatalf("a corrupt keyframe cut a segment")
	}
	push(at(synthVP8(i, true, 30), i))
	i++
	push(at(synthVP8(i, false, 30), i))
	if len(segs) != 1 || s.Dropped() != 2*len(corrupt) {
		t.Fatalf("%d segments, dropped %d", len(segs), s.Dropped())
	}
	if n := len(fc.segs[0][0]); n != 61 {
		t.Fatalf("first segment holds %d pictures, want 61", n)
	}
}

func TestContainerFailure(t *testing.T) {
	boom := errors.New("muxer broke")
	fc := &fakeContainer{fail: boom}
	s := mustNew(t, []media.Track{vp8Track(), opusTrack(1)}, Config{Container: fc, Target: time.Second})
	var err error
	for i := 0; i < 90 && err == nil; i++ {
		_, err = s.Push(synthVP8(i, i%30 == 0, 50))
	}
	if !errors.Is(err, boom) || fc.calls != 1 {
		t.Fatalf("push error %v after %d container calls", err, fc.calls)
	}
	if _, err := s.Push(synthVP8(100, true, 50)); !errors.Is(err, boom) {
		t.Fatalf("push after a container failure: %v", err)
	}
	if seg, err := s.Flush(); seg != nil || !errors.Is(err, boom) {
		t.Fatalf("flush after a container failure: %v, %v", seg, err)
	}
}

// FuzzVP8Push: arbitrary VP8 frames never panic, and every segment handed
// to the container starts with a real keyframe.
func FuzzVP8Push(f *testing.F) {
	f.Add([]byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0xff, 0x31, 0x01, 0x00, 3})
	f.Add([]byte{0x00, 0x9d, 0x01, 0x2a, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := &fakeContainer{}
		s := mustNew(t, []media.Track{vp8Track(), opusTrack(1)}, Config{Container: fc, Target: 100 * time.Millisecond, MaxDuration: time.Second})
		for i := 0; len(data) > 0; i++ {
			n := min(int(data[0]%16)+1, len(data))
			frame := data[:n]
			data = data[n:]
			if i%4 == 3 {
				s.Push(synthOpus(1, i))
				continue
			}
			au := &media.AccessUnit{Track: 0, DTS: int64(i) * 3000, PTS: int64(i) * 3000, NALUs: [][]byte{frame}}
			if _, err := s.Push(au); err != nil {
				break
			}
		}
		s.Flush()
		for _, seg := range fc.segs {
			if len(seg[0]) == 0 {
				continue
			}
			if _, _, ok := webm.VP8KeyframeSize(seg[0][0].Data[0]); !ok {
				t.Fatal("a segment starts on a non-keyframe")
			}
		}
	})
}
