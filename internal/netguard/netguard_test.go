package netguard

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serve accepts on l until it is closed and hands each connection to got.
func serve(t *testing.T, l net.Listener, got chan<- net.Conn) {
	t.Helper()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(got)
				return
			}
			got <- c
		}
	}()
}

func listen(t *testing.T, g *Guard) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := g.Wrap(l)
	t.Cleanup(func() { gl.Close() })
	return gl
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether the peer closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestCaps(t *testing.T) {
	g := New("test", Limits{MaxConns: 5, MaxPerAddr: 2}, nil)
	l := listen(t, g)
	got := make(chan net.Conn, 10)
	serve(t, l, got)
	addr := l.Addr().String()

	// Two from one address are admitted, the third is closed at once.
	a1, a2, a3 := dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr)
	var admitted []net.Conn
	for range 2 {
		admitted = append(admitted, <-got)
	}
	if !closedWithin(a3, time.Second) {
		t.Fatal("third unauthenticated connection from one address not refused")
	}
	if closedWithin(a1, 100*time.Millisecond) || closedWithin(a2, 100*time.Millisecond) {
		t.Fatal("an admitted connection was closed")
	}
	if st := g.Stats(); st.RefusedAddr != 1 || st.Open != 2 {
		t.Fatalf("stats %+v, want 1 refused per address, 2 open", st)
	}
	// Once one has authenticated, the address has room for another.
	if !Authenticated(admitted[0]) {
		t.Fatal("Authenticated: not a guarded connection")
	}
	dialFrom(t, "127.0.0.2", addr)
	admitted = append(admitted, <-got)

	// Other addresses have their own count, up to the cap in total.
	dialFrom(t, "127.0.0.3", addr)
	dialFrom(t, "127.0.0.4", addr)
	admitted = append(admitted, <-got, <-got)
	over := dialFrom(t, "127.0.0.5", addr)
	if !closedWithin(over, time.Second) {
		t.Fatal("connection over the cap in total not refused")
	}
	if st := g.Stats(); st.RefusedTotal != 1 || st.Open != 5 {
		t.Fatalf("stats %+v, want 1 refused in total, 5 open", st)
	}
	// A closed connection gives its place back.
	admitted[4].Close()
	admitted[4].Close() // twice: counted once
	dialFrom(t, "127.0.0.5", addr)
	select {
	case <-got:
	case <-time.After(2 * time.Second):
		t.Fatal("no room after a connection closed")
	}
	if st := g.Stats(); st.Open != 5 {
		t.Fatalf("%d open, want 5", st.Open)
	}
}

func TestAuthTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	g := New("test", Limits{AuthTimeout: timeout}, nil)
	l := listen(t, g)
	got := make(chan net.Conn, 10)
	serve(t, l, got)
	addr := l.Addr().String()

	idle := dialFrom(t, "127.0.0.1", addr)
	<-got
	slow := dialFrom(t, "127.0.0.1", addr)
	sc := <-got
	go io.Copy(io.Discard, sc) // the server reads what the slow client sends
	stop := make(chan struct{})
	defer close(stop)
	go func() { // slow loris: a byte every 50 ms
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if _, err := slow.Write([]byte("O")); err != nil {
					return
				}
			}
		}
	}()
	authed := dialFrom(t, "127.0.0.1", addr)
	Authenticated(<-got)

	start := time.Now()
	for name, c := range map[string]net.Conn{"idle": idle, "slow": slow} {
		if !closedWithin(c, timeout+time.Second) {
			t.Fatalf("%s connection still open %v after it was accepted", name, time.Since(start))
		}
	}
	if closedWithin(authed, 2*timeout) {
		t.Fatal("an authenticated connection was closed by the timeout")
	}
	if st := g.Stats(); st.TimedOut != 2 || st.Open != 1 {
		t.Fatalf("stats %+v, want 2 timed out, 1 open", st)
	}
}

// fakeListener fails with errs in turn, then hands out conn.
type fakeListener struct {
	mu   sync.Mutex
	errs []error
	conn net.Conn
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	if f.conn == nil {
		return nil, net.ErrClosed
	}
	c := f.conn
	f.conn = nil
	return c, nil
}
func (f *fakeListener) Close() error   { return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestAcceptRetries: out of descriptors, the listener waits and tries
// again instead of failing, as gortsplib would end its server on the
// error; a real failure still comes through.
func TestAcceptRetries(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	opErr := func(e syscall.Errno) error {
		return &net.OpError{Op: "accept", Net: "tcp", Err: fmt.Errorf("accept4: %w", e)}
	}
	f := &fakeListener{errs: []error{opErr(syscall.EMFILE), opErr(syscall.ENFILE), opErr(syscall.EMFILE), opErr(syscall.ECONNABORTED)}, conn: a}
	g := New("test", Limits{}, nil)
	l := g.Wrap(f)
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v, want the connection after the temporary errors", err)
	}
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Accept returned %T, want a guarded connection", c)
	}
	if n := g.Stats().AcceptRetries; n != 4 {
		t.Fatalf("%d retries, want 4", n)
	}

	f.errs = []error{opErr(syscall.EBADF)}
	if _, err := l.Accept(); !errors.Is(err, syscall.EBADF) {
		t.Fatalf("Accept: %v, want the permanent error", err)
	}
	// Closing the listener ends a wait for descriptors at once.
	f.errs = []error{opErr(syscall.EMFILE), opErr(syscall.EMFILE), opErr(syscall.EMFILE), opErr(syscall.EMFILE),
		opErr(syscall.EMFILE), opErr(syscall.EMFILE), opErr(syscall.EMFILE), opErr(syscall.EMFILE), opErr(syscall.EMFILE)}
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}

func TestRaiseFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	// Below the hard limit, whatever it is, so there is something to raise.
	low := syscall.Rlimit{Cur: min(128, orig.Max/2), Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	soft, hard, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if soft != orig.Max || hard != orig.Max || now.Cur != orig.Max {
		t.Fatalf("after RaiseFileLimit: soft %d (now %d), hard %d; want both %d", soft, now.Cur, hard, orig.Max)
	}
}
