package codec

import (
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

func TestEncodePattern(t *testing.T) {
	const fps, frames = 30, 90
	aus, err := EncodePattern(PatternConfig{Width: 320, Height: 180, FPS: fps, Frames: frames, Bitrate: 500_000, GOP: 30})
	if err != nil {
		t.Fatal(err)
	}
	if len(aus) != frames {
		t.Fatalf("%d pictures, want %d", len(aus), frames)
	}
	bytes := 0
	for i, au := range aus {
		idr := h264.IsRandomAccess(au)
		if idr != (i%30 == 0) {
			t.Fatalf("picture %d: IDR %v, want keyframes every 30 pictures only", i, idr)
		}
		types := map[h264.NALUType]bool{}
		for _, n := range au {
			types[h264.NALUType(n[0]&0x1f)] = true
			bytes += len(n)
		}
		if idr && (!types[h264.NALUTypeSPS] || !types[h264.NALUTypePPS]) {
			t.Fatalf("IDR %d without its parameter sets in band", i)
		}
	}
	var sps h264.SPS
	if err := sps.Unmarshal(aus[0][0]); err != nil || sps.Width() != 320 || sps.Height() != 180 {
		t.Fatalf("SPS: %v, %dx%d", err, sps.Width(), sps.Height())
	}
	if rate := float64(bytes*8) / (frames / fps); rate < 250_000 || rate > 750_000 {
		t.Fatalf("%.0f bit/s for a 500 kbit/s target", rate)
	}
	if _, err := EncodePattern(PatternConfig{Width: 321, Height: 180, FPS: fps, Frames: 1, Bitrate: 500_000}); err == nil {
		t.Fatal("an odd width was accepted")
	}
}
