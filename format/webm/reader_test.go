package webm

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// Test streams are built by hand, so that the parser is checked against
// the Matroska layout itself rather than against camvault's writer (the
// recorder's VP8 test checks it against that, and against FFmpeg).

func ebml(id uint32, body ...[]byte) []byte {
	var b []byte
	switch {
	case id >= 1<<24:
		b = binary.BigEndian.AppendUint32(b, id)
	case id >= 1<<16:
		b = append(b, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		b = append(b, byte(id>>8), byte(id))
	default:
		b = append(b, byte(id))
	}
	n := 0
	for _, p := range body {
		n += len(p)
	}
	b = append(b, 0x01) // an 8-byte size
	b = append(b, byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

func unknownSizeSegment(body ...[]byte) []byte {
	b := []byte{0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

func trackEntry(num byte) []byte {
	return ebml(mkvTrackEntry, ebml(mkvTrackNumber, []byte{num}), ebml(0x86, []byte("V_VP8")))
}

func block(track byte, rel int16, flags byte, frame string) []byte {
	return append([]byte{0x80 | track, byte(uint16(rel) >> 8), byte(rel), flags}, frame...)
}

func testWebM() []byte {
	header := ebml(mkvEBML, ebml(0x4282, []byte("webm")))
	return append(header, unknownSizeSegment(
		ebml(0x1549A966, ebml(0x2AD7B1, []byte{0x0f, 0x42, 0x40})), // Info, timecode scale
		ebml(mkvTracks, trackEntry(1), trackEntry(2)),
		ebml(mkvCluster, ebml(0xE7, []byte{0}),
			ebml(mkvSimpleBlock, block(1, 0, 0x80, "key")),
			ebml(mkvSimpleBlock, block(2, 7, 0x80, "opus1")),
			ebml(0xEC, []byte{0, 0}), // Void
			ebml(mkvSimpleBlock, block(1, 33, 0, "inter"))),
		ebml(mkvCluster, ebml(0xE7, []byte{0x07, 0xd0}),
			ebml(mkvBlockGroup, ebml(mkvBlock, block(2, 0, 0, "opus2")), ebml(0x9B, []byte{20})),
			ebml(mkvSimpleBlock, block(1, 0, 0x80, "key2"))),
	)...)
}

func TestWebMSamples(t *testing.T) {
	got, err := Samples(testWebM())
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"key", "inter", "key2"}, {"opus1", "opus2"}}
	if len(got) != 2 {
		t.Fatalf("%d tracks", len(got))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("track %d: %d frames", i, len(got[i]))
		}
		for k := range want[i] {
			if string(got[i][k]) != want[i][k] {
				t.Fatalf("track %d frame %d: %q", i, k, got[i][k])
			}
		}
	}
}

func TestWebMSamplesRejects(t *testing.T) {
	good := testWebM()
	header := ebml(mkvEBML, ebml(0x4282, []byte("webm")))
	tracks := ebml(mkvTracks, trackEntry(1))
	for name, c := range map[string]struct {
		data []byte
		msg  string
	}{
		"not webm":         {[]byte("\x00\x00\x00\x18ftypiso5"), "no EBML header"},
		"no segment":       {header, "no Segment"},
		"no tracks":        {append(bytes.Clone(header), unknownSizeSegment()...), "no Tracks"},
		"laced":            {append(bytes.Clone(header), unknownSizeSegment(tracks, ebml(mkvCluster, ebml(mkvSimpleBlock, block(1, 0, 0x82, "xx"))))...), "laced"},
		"undeclared track": {append(bytes.Clone(header), unknownSizeSegment(tracks, ebml(mkvCluster, ebml(mkvSimpleBlock, block(3, 0, 0x80, "xx"))))...), "track 3"},
		"cluster first":    {append(bytes.Clone(header), unknownSizeSegment(ebml(mkvCluster), tracks)...), "before Tracks"},
		"short block":      {append(bytes.Clone(header), unknownSizeSegment(tracks, ebml(mkvCluster, ebml(mkvSimpleBlock, []byte{0x81, 0})))...), "truncated"},
		"truncated":        {good[:len(good)-3], "truncated"},
	} {
		if _, err := Samples(c.data); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want an error about %q", name, err, c.msg)
		}
	}
	// No prefix of a valid stream panics.
	for n := range good {
		Samples(good[:n])
	}
}

func FuzzWebMSamples(f *testing.F) {
	f.Add(testWebM())
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Samples(data)
		if err == nil && out == nil {
			t.Fatal("no tracks and no error")
		}
	})
}

func TestTracksCodecs(t *testing.T) {
	_, codecs, err := Tracks(testWebM())
	if err != nil {
		t.Fatal(err)
	}
	if len(codecs) != 2 || codecs[0] != "vp8" || codecs[1] != "vp8" {
		t.Fatalf("codecs %q, want vp8 twice (as FFmpeg names V_VP8)", codecs)
	}
}
