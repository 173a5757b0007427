package codec

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asticode/go-astiav"
)

// DefaultLogLimit is how many of FFmpeg's lines a LogLimiter passes per
// level each second when Limit is unset.
const DefaultLogLimit = 10

// LogLimiter passes FFmpeg's log lines to a structured logger, at most
// Limit lines per FFmpeg level in each one-second window. FFmpeg writes
// its log unstructured to stderr by default, a line or more for every
// damaged picture, so a camera sending junk H.264 could bury the node's
// log; through a LogLimiter the lines are records like any other, and a
// flood costs Limit lines a second and one line counting the rest. It is
// safe for concurrent use (FFmpeg logs from every decoder's thread).
type LogLimiter struct {
	Log   *slog.Logger
	Limit int              // lines per level per second; 0: DefaultLogLimit
	Now   func() time.Time // nil: time.Now

	mu      sync.Mutex
	windows map[astiav.LogLevel]*logWindow
}

// logWindow is one level's current second.
type logWindow struct {
	start      time.Time
	passed     int
	suppressed int
}

// RouteFFmpegLog makes l the receiver of FFmpeg's whole log, in place of
// its default writer to stderr. FFmpeg's own level (astiav.SetLogLevel)
// still decides which lines are made at all. There is one FFmpeg log per
// process: the last call wins; ResetFFmpegLog restores stderr.
func RouteFFmpegLog(l *LogLimiter) {
	routed.Store(l)
	setLogCallback()
}

// ResetFFmpegLog gives FFmpeg's log back to its default writer, stderr.
func ResetFFmpegLog() {
	resetLogCallback()
	routed.Store(nil)
}

// routed is the LogLimiter FFmpeg's callback hands its lines to.
var routed atomic.Pointer[LogLimiter]

// ffmpegLine is called by the C callback (log_cgo.go) for every line
// FFmpeg makes at or below its level.
func ffmpegLine(component string, level astiav.LogLevel, msg string) {
	if l := routed.Load(); l != nil {
		l.Line(component, level, msg)
	}
}

// Line takes one FFmpeg message. FFmpeg ends most messages with a newline
// and sometimes sends a line in pieces; each non-empty piece is a record.
func (l *LogLimiter) Line(component string, level astiav.LogLevel, msg string) {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.windows == nil {
		l.windows = map[astiav.LogLevel]*logWindow{}
	}
	w := l.windows[level]
	if w == nil {
		w = &logWindow{start: now}
		l.windows[level] = w
	}
	if now.Sub(w.start) >= time.Second {
		l.reportSuppressed(level, w)
		w.start, w.passed = now, 0
	}
	if w.passed >= l.limit() {
		w.suppressed++
		return
	}
	w.passed++
	l.logger().Log(context.Background(), slogLevel(level), "ffmpeg: "+msg, "component", component)
}

// Flush logs the count of lines suppressed since the last count, for each
// level (Line reports them itself at the first line of the next second).
func (l *LogLimiter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for level, w := range l.windows {
		l.reportSuppressed(level, w)
	}
}

func (l *LogLimiter) reportSuppressed(level astiav.LogLevel, w *logWindow) {
	if w.suppressed == 0 {
		return
	}
	l.logger().Log(context.Background(), slogLevel(level), "ffmpeg: log lines suppressed", "suppressed", w.suppressed,
		"limit_per_second", l.limit())
	w.suppressed = 0
}

func (l *LogLimiter) limit() int {
	if l.Limit <= 0 {
		return DefaultLogLimit
	}
	return l.Limit
}

func (l *LogLimiter) now() time.Time {
	if l.Now == nil {
		return time.Now()
	}
	return l.Now()
}

func (l *LogLimiter) logger() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

// slogLevel maps FFmpeg's levels onto slog's: panic, fatal and error are
// errors, verbose and debug debug.
func slogLevel(l astiav.LogLevel) slog.Level {
	switch {
	case l <= astiav.LogLevelError:
		return slog.LevelError
	case l <= astiav.LogLevelWarning:
		return slog.LevelWarn
	case l <= astiav.LogLevelInfo:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}
