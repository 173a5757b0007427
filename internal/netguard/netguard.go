// Package netguard keeps a TCP listener working whatever its clients do:
// it caps the connections open at once, in total and per remote address,
// closes a connection that has not authenticated within a deadline, and
// retries the accept errors a process under load sees (EMFILE, ENFILE,
// ENOBUFS, ...) with backoff instead of handing them to the server above,
// which may treat any accept error as fatal (gortsplib's RTSP server ends
// on the first one).
//
// A refused connection is accepted and closed at once: it costs a file
// descriptor for a moment, never for as long as its client wants.
package netguard

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Limits of one listener. Zero values mean no limit.
type Limits struct {
	// MaxConns caps the connections open at once.
	MaxConns int
	// MaxPerAddr caps the connections from one remote IP address that have
	// not authenticated yet (all of them on a listener where nothing calls
	// Authenticated). An authenticated connection no longer counts, so many
	// cameras behind one NAT address are not held back by strangers beside
	// them, while one address cannot fill the listener with idle sockets.
	MaxPerAddr int
	// AuthTimeout closes a connection that has not been marked
	// Authenticated this long after it was accepted, whatever it sent in
	// between: an idle connection and a slow-loris one (a byte now and
	// then) end alike.
	AuthTimeout time.Duration
}

// Stats are a guard's counters since it was made.
type Stats struct {
	Open          int64 // connections open now
	RefusedTotal  int64 // closed at accept: MaxConns reached
	RefusedAddr   int64 // closed at accept: MaxPerAddr reached for their address
	TimedOut      int64 // closed by AuthTimeout
	AcceptRetries int64 // temporary accept errors waited out
}

// logEvery is how often each kind of refusal is logged at most; the
// lines in between are counted in the next one.
const logEvery = 10 * time.Second

// Accept-error backoff, as net/http's: short first, for a moment's
// shortage, doubling to a second while it lasts.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Guard is the state one logical listener shares across the net.Listeners
// it wraps (a server that restarts its listener keeps its counts).
type Guard struct {
	name string
	lim  Limits
	log  *slog.Logger

	mu      sync.Mutex
	open    int
	perAddr map[string]int

	refusedTotal, refusedAddr, timedOut, retries atomic.Int64

	logRefused, logTimeout, logAccept rateLog
}

// New makes a guard; name is the listener's name in its log lines.
func New(name string, lim Limits, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{name: name, lim: lim, log: log, perAddr: map[string]int{}}
}

// Limits returns the guard's limits.
func (g *Guard) Limits() Limits { return g.lim }

// Stats returns the guard's counters.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	return Stats{Open: int64(open), RefusedTotal: g.refusedTotal.Load(), RefusedAddr: g.refusedAddr.Load(),
		TimedOut: g.timedOut.Load(), AcceptRetries: g.retries.Load()}
}

// Wrap returns l under the guard's limits.
func (g *Guard) Wrap(l net.Listener) net.Listener {
	return &listener{Listener: l, g: g, done: make(chan struct{})}
}

type listener struct {
	net.Listener
	g         *Guard
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Accept returns the next connection within the limits. It returns an
// error only when the listener is closed or fails for good.
func (l *listener) Accept() (net.Conn, error) {
	g := l.g
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !Temporary(err) {
				return nil, err
			}
			delay = min(max(2*delay, minBackoff), maxBackoff)
			g.retries.Add(1)
			if n, ok := g.logAccept.allow(); ok {
				g.log.Warn("accept failed: retrying", "listener", g.name, "err", err, "retry_in", delay, "since_last_line", n)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if gc := g.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// admit counts c in or closes it; nil when it was refused.
func (g *Guard) admit(c net.Conn) net.Conn {
	addr := remoteIP(c)
	g.mu.Lock()
	why := ""
	switch {
	case g.lim.MaxConns > 0 && g.open >= g.lim.MaxConns:
		why = "too many connections"
	case g.lim.MaxPerAddr > 0 && g.perAddr[addr] >= g.lim.MaxPerAddr:
		why = "too many unauthenticated connections from this address"
	default:
		g.open++
		g.perAddr[addr]++
	}
	g.mu.Unlock()
	if why != "" {
		c.Close()
		if why == "too many connections" {
			g.refusedTotal.Add(1)
		} else {
			g.refusedAddr.Add(1)
		}
		if n, ok := g.logRefused.allow(); ok {
			g.log.Warn("connection refused", "listener", g.name, "remote", addr, "reason", why,
				"max_conns", g.lim.MaxConns, "max_per_addr", g.lim.MaxPerAddr, "since_last_line", n)
		}
		return nil
	}
	gc := &Conn{Conn: c, g: g, addr: addr, pending: true}
	if d := g.lim.AuthTimeout; d > 0 {
		// Under the lock, which expire takes first: it may fire at once.
		gc.mu.Lock()
		gc.timer = time.AfterFunc(d, gc.expire)
		gc.mu.Unlock()
	}
	return gc
}

func remoteIP(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	default:
		if h, _, err := net.SplitHostPort(a.String()); err == nil {
			return h
		}
		return a.String()
	}
}

// Conn is a connection a guard admitted.
type Conn struct {
	net.Conn
	g    *Guard
	addr string

	mu      sync.Mutex
	timer   *time.Timer // AuthTimeout's; nil without one
	pending bool        // counted in perAddr: not authenticated yet
	closed  bool
}

// Authenticated lifts the connection's deadline and takes it out of its
// address's count: its peer has proved who it is.
func (c *Conn) Authenticated() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.pending {
		return
	}
	if c.timer != nil && !c.timer.Stop() {
		return // the deadline has passed; expire is closing it
	}
	c.pending = false
	c.g.release(c.addr, true, false)
}

func (c *Conn) expire() {
	c.mu.Lock()
	pending := c.pending && !c.closed
	c.mu.Unlock()
	if !pending {
		return
	}
	c.g.timedOut.Add(1)
	if n, ok := c.g.logTimeout.allow(); ok {
		c.g.log.Warn("connection closed: not authenticated in time", "listener", c.g.name, "remote", c.addr,
			"timeout", c.g.lim.AuthTimeout, "since_last_line", n)
	}
	c.Close()
}

// Close closes the connection and gives its place back.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.Conn.Close()
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	pending := c.pending
	c.mu.Unlock()
	c.g.release(c.addr, pending, true)
	return c.Conn.Close()
}

func (g *Guard) release(addr string, pending, conn bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if pending {
		if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
			delete(g.perAddr, addr)
		}
	}
	if conn {
		g.open--
	}
}

// Authenticated marks c (a connection a guard admitted, or a TLS
// connection over one) as authenticated; see Conn.Authenticated. It
// reports whether c was a guarded connection.
func Authenticated(c net.Conn) bool {
	for c != nil {
		switch v := c.(type) {
		case *Conn:
			v.Authenticated()
			return true
		case *tls.Conn:
			c = v.NetConn()
		default:
			return false
		}
	}
	return false
}

// Temporary reports whether an accept error is one that passes: the
// process or the system is out of descriptors or buffers for a moment, or
// a connection went away before it was accepted. Anything else (a closed
// or broken socket) is for the caller.
func Temporary(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rateLog lets one line through per logEvery and counts the rest.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were held back
// since the last one.
func (r *rateLog) allow() (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < logEvery {
		r.suppressed++
		return 0, false
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return n, true
}
