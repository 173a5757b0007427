package rtsp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"camvault/camera"
	"camvault/ingest"
	"camvault/internal/netguard"
)

type noCameras struct{}

func (noCameras) Authenticate(context.Context, string, string) (camera.Camera, error) {
	return camera.Camera{}, errors.New("no cameras here")
}

// syncBuffer is a log sink the server's goroutines and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// options sends OPTIONS and reports whether an RTSP answer comes back.
func options(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintf(c, "OPTIONS rtsp://%s/ RTSP/1.0\r\nCSeq: 1\r\n\r\n", addr); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "RTSP/1.0 200") {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

// brokenListener accepts nothing: once tripped, Accept fails with an error
// no retry can cure, as a listener whose socket broke.
type brokenListener struct {
	net.Listener
	trip   <-chan struct{}
	closed chan struct{}
	once   sync.Once
}

func (b *brokenListener) Accept() (net.Conn, error) {
	select {
	case <-b.trip:
		return nil, errors.New("accept: the socket broke")
	case <-b.closed:
		return nil, net.ErrClosed
	}
}

func (b *brokenListener) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.Listener.Close()
}

// TestListenerRestartsAfterAcceptFailure: gortsplib ends its server on a
// failed accept, taking every session with it. The server notices, says
// so in the log, reports itself unhealthy while it cannot listen, and
// starts the listener again.
func TestListenerRestartsAfterAcceptFailure(t *testing.T) {
	addr := freeAddr(t)
	var logs syncBuffer
	s := NewServer(Config{Address: addr}, noCameras{}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	trip := make(chan struct{})
	var opened atomic.Int32
	var refuse atomic.Bool
	s.listen = func(network, address string) (net.Listener, error) {
		if refuse.Load() {
			return nil, errors.New("listen: not now")
		}
		l, err := ingest.ListenBuffered(network, address)
		if err != nil {
			return nil, err
		}
		if opened.Add(1) == 1 {
			return &brokenListener{Listener: l, trip: trip, closed: make(chan struct{})}, nil
		}
		return l, nil
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Healthy(); err != nil {
		t.Fatalf("healthy at start: %v", err)
	}

	refuse.Store(true) // the first restarts fail: the node stays unhealthy meanwhile
	close(trip)
	deadline := time.Now().Add(5 * time.Second)
	for s.Healthy() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Healthy(); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("after the listener stopped: Healthy() = %v, want why it stopped", err)
	}
	if !strings.Contains(logs.String(), "rtsp listener stopped") {
		t.Fatalf("the stop is not logged:\n%s", logs.String())
	}

	refuse.Store(false)
	deadline = time.Now().Add(10 * time.Second)
	for s.Healthy() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("listener not restarted: %v\n%s", err, logs.String())
	}
	if err := options(addr); err != nil {
		t.Fatalf("OPTIONS after the restart: %v", err)
	}
	if n := s.Restarts.Load(); n != 1 {
		t.Fatalf("%d restarts, want 1", n)
	}
	if !strings.Contains(logs.String(), "rtsp listener restarted") {
		t.Fatalf("the restart is not logged:\n%s", logs.String())
	}
}

// TestUnauthenticatedTimeout: a connection that has not authenticated
// and started recording within the timeout is closed, idle or sending a
// byte at a time; gortsplib's ReadTimeout alone would wait for the
// request forever.
func TestUnauthenticatedTimeout(t *testing.T) {
	addr := freeAddr(t)
	const timeout = 500 * time.Millisecond
	s := NewServer(Config{Address: addr, Limits: netguard.Limits{AuthTimeout: timeout}}, noCameras{}, nil, slog.New(slog.DiscardHandler))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	go func() {
		for _, b := range []byte("OPTIONS rtsp://x/ RTSP/1.0\r\nCSeq: 1\r\n") {
			if _, err := slow.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	for name, c := range map[string]net.Conn{"idle": idle, "slow": slow} {
		c.SetReadDeadline(start.Add(timeout + 2*time.Second))
		_, err := c.Read(make([]byte, 64))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s connection still open %v after connecting (read: %v)", name, time.Since(start), err)
		}
	}
	if st := s.Guard().Stats(); st.TimedOut != 2 {
		t.Fatalf("%d connections timed out, want 2", st.TimedOut)
	}
	// The listener still answers.
	if err := options(addr); err != nil {
		t.Fatalf("OPTIONS: %v", err)
	}
}
