package backoffice

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"camvault/catalog"
)

// Outbox is what the backoffice reads of the catalog's alert outbox.
type Outbox interface {
	AlertsAfter(ctx context.Context, after int64, limit int) ([]catalog.Alert, error)
	// AlertsBefore is newest first: the Live page opens with the latest.
	AlertsBefore(ctx context.Context, before int64, limit int) ([]catalog.Alert, error)
	LastAlertID(ctx context.Context) (int64, error)
}

// Waker is an outbox that says when it may have grown, sooner than a
// poll would find out (the catalog: after this process's commits, and on
// PostgreSQL on every node's, by LISTEN/NOTIFY). A wake is only a hint
// to read after the last id seen: the outbox stays the truth, so a lost
// wake delays an alert by one poll and loses nothing.
type Waker interface {
	// WatchAlerts calls wake (which never blocks) until ctx ends; onErr
	// hears why a listening connection was lost.
	WatchAlerts(ctx context.Context, wake func(), onErr func(error)) error
	// WatchesEveryWriter reports whether wakes come for every process's
	// alerts; the poll is then only a safety net and runs at safetyPoll.
	WatchesEveryWriter() bool
}

// safetyPoll is how often the outbox is read when a Waker hears every
// writer: what a wake lost (a notification sent while the listener was
// reconnecting) arrives within it.
const safetyPoll = 2 * time.Second

// pageSize bounds one outbox read.
const pageSize = 256

// hub is the one reader of the outbox for every live consumer. It reads
// `id > last` when woken (Waker) and on a poll, the safety net that also
// finds what other processes wrote (the CLI placing a hold on SQLite);
// that read costs tens of microseconds on the primary key, and the
// catalog assigns ids in commit order (SQLite's single writer, a lock on
// PostgreSQL), so nothing is skipped.
type hub struct {
	src   Outbox
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	last    int64
	subs    map[*subscription]struct{}
	changed chan struct{} // closed and replaced whenever last advances
	closed  bool

	woken chan struct{} // one pending wake
}

func newHub(src Outbox, every time.Duration, log *slog.Logger) *hub {
	if w, ok := src.(Waker); ok && w.WatchesEveryWriter() {
		every = max(every, safetyPoll)
	}
	return &hub{src: src, every: every, log: log, subs: map[*subscription]struct{}{}, changed: make(chan struct{}),
		woken: make(chan struct{}, 1)}
}

// wake asks run to read the outbox now; wakes while one is pending merge.
func (h *hub) wake() {
	select {
	case h.woken <- struct{}{}:
	default:
	}
}

// init positions the hub at the outbox's end: live consumers get what is
// committed from now on; history is read from the catalog by whoever
// asks for it.
func (h *hub) init(ctx context.Context) error {
	last, err := h.src.LastAlertID(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.last = last
	h.mu.Unlock()
	return nil
}

// run reads the outbox when woken and at every poll until ctx ends, then
// ends every subscription.
func (h *hub) run(ctx context.Context) {
	defer h.close()
	if w, ok := h.src.(Waker); ok {
		watching := make(chan struct{})
		defer func() { <-watching }()
		go func() {
			defer close(watching)
			w.WatchAlerts(ctx, h.wake, func(err error) {
				h.log.Warn("alert listener lost; reconnecting (the outbox is read after the last id seen)", "err", err)
			})
		}()
	}
	t := time.NewTicker(h.every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.woken:
		}
		for {
			n, err := h.poll(ctx)
			if err != nil {
				if ctx.Err() == nil && !failing {
					h.log.Error("read alert outbox", "err", err)
				}
				failing = true
				break
			}
			failing = false
			if n < pageSize {
				break
			}
		}
	}
}

// poll reads one page after last and fans it out.
func (h *hub) poll(ctx context.Context) (int, error) {
	h.mu.Lock()
	after := h.last
	h.mu.Unlock()
	alerts, err := h.src.AlertsAfter(ctx, after, pageSize)
	if err != nil || len(alerts) == 0 {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range alerts {
		for s := range h.subs {
			s.offer(a)
			if s.overflowed {
				delete(h.subs, s)
			}
		}
	}
	h.last = alerts[len(alerts)-1].ID
	close(h.changed)
	h.changed = make(chan struct{})
	return len(alerts), nil
}

// position returns the last id fanned out, and a channel closed when a
// later one is.
func (h *hub) position() (int64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, h.changed
}

// subscribe returns a subscription that receives every alert after from,
// the position at the moment of subscribing; at most buf wait unread.
func (h *hub) subscribe(buf int) (s *subscription, from int64) {
	s = &subscription{c: make(chan catalog.Alert, buf)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.c)
		return s, h.last
	}
	h.subs[s] = struct{}{}
	return s, h.last
}

func (h *hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		close(s.c)
	}
	h.subs = map[*subscription]struct{}{}
}

// subscription is one live consumer's queue. The hub never waits for it:
// when its buffer is full the consumer is too slow, its channel is closed
// with overflowed set, and it catches up by reconnecting from its last id.
type subscription struct {
	c          chan catalog.Alert
	overflowed bool // set under hub.mu before c is closed
}

// offer queues a without blocking; the caller holds hub.mu.
func (s *subscription) offer(a catalog.Alert) {
	select {
	case s.c <- a:
	default:
		s.overflowed = true
		close(s.c)
	}
}
