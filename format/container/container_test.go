package container

import (
	"testing"

	"camvault/media"
)

func TestFormatFor(t *testing.T) {
	vp8 := media.Track{ID: 0, Codec: media.CodecVP8, ClockRate: 90000, Width: 320, Height: 240}
	h264 := media.Track{ID: 0, Codec: media.CodecH264, ClockRate: 90000}
	opus := func(id int) media.Track {
		return media.Track{ID: id, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 2}
	}
	if f := FormatFor([]media.Track{vp8, opus(1)}); f != FormatWebM {
		t.Fatalf("VP8+Opus: %s", f)
	}
	if f := FormatFor([]media.Track{h264, opus(1)}); f != FormatFMP4 {
		t.Fatalf("H.264+Opus: %s", f)
	}
	if f := FormatFor([]media.Track{opus(0)}); f != FormatFMP4 {
		t.Fatalf("Opus alone: %s", f)
	}
}

func TestOf(t *testing.T) {
	for codec, want := range map[string]string{"fmp4:h264+aac": FormatFMP4, "webm:vp8+opus": FormatWebM, "jpeg": "jpeg", "": ""} {
		if got := Of(codec); got != want {
			t.Errorf("Of(%q) = %q, want %q", codec, got, want)
		}
	}
}
