package rtsp

import (
	"testing"

	"github.com/pion/rtp"
)

func TestReplayGuard(t *testing.T) {
	var td trackDepack
	for _, tc := range []struct {
		seq  uint16
		want bool
	}{{100, true}, {101, true}, {101, false}, {99, false}, {105, true}, {65535, false}, {200, true}} {
		if got := td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: tc.seq}}); got != tc.want {
			t.Errorf("seq %d: accept %v, want %v", tc.seq, got, tc.want)
		}
	}
	// Wrap-around is progress, not a replay.
	td = trackDepack{}
	td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: 65535}})
	if !td.accept(&rtp.Packet{Header: rtp.Header{SequenceNumber: 0}}) {
		t.Fatal("sequence wrap-around refused")
	}
}
