package codec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a log destination FFmpeg's threads may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// captureStderr runs fn with file descriptor 2 (where FFmpeg's default
// log writes, under Go's os.Stderr) on a pipe, and returns what reached it.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&out, r); close(done) }() // read while fn writes: a full pipe would block FFmpeg
	if err := syscall.Dup2(int(w.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	fn()
	syscall.Dup2(saved, 2)
	syscall.Close(saved)
	w.Close()
	<-done
	r.Close()
	return out.String()
}

// TestFFmpegLogIsStructuredAndLimited: junk H.264 (a camera sending
// truncated keyframes, segment after segment) makes FFmpeg write a line
// or more per segment to stderr. Routed through a LogLimiter, nothing
// reaches stderr and the logger gets at most the limit, plus one line
// counting what was suppressed.
func TestFFmpegLogIsStructuredAndLimited(t *testing.T) {
	s := recordH264(t, 320, 240, 4, 60)
	r := NewProxyRenderer(ProxyConfig{Threads: 2})
	badKey := truncateNAL(t, s.segs[1].Data, 0)
	const segments = 30
	junk := func() {
		for range segments {
			if _, err := r.Thumbnail(context.Background(), s.init, badKey); !errors.Is(err, ErrDecode) {
				t.Errorf("thumbnail of a truncated keyframe: %v, want a decode error", err)
			}
		}
	}
	// Without the route the flood is real: FFmpeg's default log writes
	// to stderr for every junk segment.
	if raw := captureStderr(t, junk); strings.Count(raw, "\n") < segments {
		t.Fatalf("FFmpeg wrote %d lines to stderr for %d junk segments; the test needs a flood:\n%s", strings.Count(raw, "\n"), segments, raw)
	}

	var logged lockedBuffer
	frozen := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC) // one window: nothing refills the limit mid-test
	const limit = 5
	lim := &LogLimiter{Log: slog.New(slog.NewJSONHandler(&logged, nil)), Limit: limit, Now: func() time.Time { return frozen }}
	RouteFFmpegLog(lim)
	defer ResetFFmpegLog()
	raw := captureStderr(t, func() {
		junk()
		lim.Flush()
	})
	if raw != "" {
		t.Fatalf("FFmpeg still wrote to stderr with its log routed:\n%s", raw)
	}
	lines := strings.Split(strings.TrimSpace(logged.b.String()), "\n")
	t.Logf("the logger received:\n%s", logged.b.String())
	suppressed := 0
	for _, line := range lines {
		var rec struct {
			Level, Msg string
			Suppressed int
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a structured record: %q: %v", line, err)
		}
		if !strings.HasPrefix(rec.Msg, "ffmpeg: ") || rec.Level != "ERROR" {
			t.Errorf("record %q: want an ERROR starting with \"ffmpeg: \"", line)
		}
		suppressed += rec.Suppressed
	}
	if len(lines) > limit+1 || suppressed == 0 {
		t.Fatalf("%d records, %d lines counted as suppressed; want at most %d lines and one count:\n%s", len(lines), suppressed, limit+1, logged.b.String())
	}
	if !strings.Contains(lines[len(lines)-1], `"msg":"ffmpeg: log lines suppressed"`) {
		t.Fatalf("last record %q: want the count of suppressed lines", lines[len(lines)-1])
	}
}
