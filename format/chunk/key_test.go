package chunk

import (
	"errors"
	"testing"
)

func TestObjectKey(t *testing.T) {
	h := testHeader(42)
	// The layout is fixed: stored chunks and exports are found by it.
	if got, want := ObjectKey(h), "inc-1/ses-1/original/00000042.chunk"; got != want {
		t.Fatalf("ObjectKey = %q, want %q", got, want)
	}
	h.Track, h.Seq = TrackProxy, 123456789
	if got, want := ObjectKey(h), "inc-1/ses-1/proxy/123456789.chunk"; got != want {
		t.Fatalf("ObjectKey = %q, want %q", got, want)
	}
	back, err := ParseObjectKey(ObjectKey(h))
	if err != nil {
		t.Fatal(err)
	}
	if back.Incident != h.Incident || back.Session != h.Session || back.Track != h.Track || back.Seq != h.Seq {
		t.Fatalf("ParseObjectKey = %+v", back)
	}
}

func TestParseObjectKeyRejects(t *testing.T) {
	for _, key := range []string{
		"",
		"inc-1/ses-1/original",
		"inc-1/ses-1/original/00000001.json",
		"inc-1/ses-1/original/1.chunk",
		"inc-1/ses-1/original/000000001.chunk",
		"inc-1/ses-1/original/0000000x.chunk",
		"inc-1/ses-1/original/-0000001.chunk",
		"inc-1//original/00000001.chunk",
		"inc-1/ses-1/x/original/00000001.chunk",
		"inc-1/checkpoints/000000000004.json",
	} {
		if _, err := ParseObjectKey(key); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseObjectKey(%q): %v, want ErrMalformed", key, err)
		}
	}
}
