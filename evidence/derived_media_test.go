package evidence

import "testing"

func TestOpusSamples(t *testing.T) {
	for _, c := range []struct {
		pkt  []byte
		want int
	}{
		{[]byte{0xfc, 1}, 960},       // CELT 20 ms, one frame
		{[]byte{0xfd, 1}, 1920},      // CELT 20 ms, two equal frames
		{[]byte{0x00, 1}, 480},       // SILK 10 ms
		{[]byte{0x08, 1}, 960},       // SILK 20 ms
		{[]byte{0x1a, 1}, 5760},      // SILK 60 ms, two frames
		{[]byte{0x60, 1}, 480},       // hybrid 10 ms
		{[]byte{0x78, 1}, 960},       // hybrid 20 ms
		{[]byte{0x83, 0x04, 1}, 480}, // CELT 2.5 ms, code 3, 4 frames
	} {
		got, err := opusSamples(c.pkt)
		if err != nil || got != c.want {
			t.Errorf("% x: %d samples (%v), want %d", c.pkt, got, err, c.want)
		}
	}
	// Empty; code 3 without its count; no frames; 3 × 60 ms (over 120 ms).
	for _, bad := range [][]byte{nil, {0xff}, {0x83, 0x00}, {0x1b, 0x03, 1}} {
		if n, err := opusSamples(bad); err == nil {
			t.Errorf("% x: %d samples from an invalid packet", bad, n)
		}
	}
}

func TestSeqRanges(t *testing.T) {
	for _, c := range []struct {
		seqs []uint64
		want string
	}{
		{nil, ""},
		{[]uint64{0}, "0"},
		{[]uint64{0, 1, 2, 3}, "0-3"},
		{[]uint64{0, 1, 2, 5, 7, 8}, "0-2, 5, 7-8"},
	} {
		if got := seqRanges(c.seqs); got != c.want {
			t.Errorf("seqRanges(%v) = %q, want %q", c.seqs, got, c.want)
		}
	}
}

func TestDerivable(t *testing.T) {
	if !derivable(CodecVP8, CodecH264) || !derivable(CodecOpus, CodecAAC) {
		t.Fatal("the exporter's transcodes are not accepted")
	}
	for _, p := range [][2]string{{CodecH264, CodecH264}, {CodecVP8, CodecAAC}, {CodecOpus, CodecH264}, {CodecAAC, CodecOpus}, {"hevc", CodecH264}} {
		if derivable(p[0], p[1]) {
			t.Errorf("%s from %s accepted as derived", p[1], p[0])
		}
	}
}
