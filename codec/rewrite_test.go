package codec

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

func TestRewriteRefusesBadInput(t *testing.T) {
	for name, c := range map[string]struct {
		data []byte
		rw   Rewrite
	}{
		"nothing":        {nil, Rewrite{}},
		"garbage":        {[]byte("no media at all, just words"), Rewrite{}},
		"backwards":      {[]byte("x"), Rewrite{From: 2 * time.Second, To: time.Second}},
		"negative start": {[]byte("x"), Rewrite{From: -time.Second}},
	} {
		var out bytes.Buffer
		if err := (Exporter{}).RewriteMP4(context.Background(), c.data, c.rw, &out); err == nil {
			t.Errorf("%s: no error", name)
		}
		if out.Len() != 0 {
			t.Errorf("%s: %d bytes written", name, out.Len())
		}
		if err := Pictures(context.Background(), c.data, 1, 1, func(*Picture) error { return nil }); err == nil {
			t.Errorf("%s: pictures decoded", name)
		}
	}
}

func TestMemoryWriterSeeks(t *testing.T) {
	var m memoryWriter
	m.write([]byte("hello world"))
	if _, err := m.seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	m.write([]byte("J"))
	if n, _ := m.seek(0, avseekSize); n != 11 {
		t.Errorf("size %d", n)
	}
	m.seek(2, io.SeekEnd)
	m.write([]byte("!"))
	if got := string(m.buf); got != "Jello world\x00\x00!" {
		t.Errorf("%q", got)
	}
	if _, err := m.seek(-1, io.SeekStart); err == nil {
		t.Error("seek before the start")
	}
}
