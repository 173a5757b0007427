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

// pageSize bounds one outbox read.
const pageSize = 256

// hub is the one reader of the outbox for every live consumer. It polls
// rather than being told by the catalog because other processes (the CLI
// placing a hold, the retention sweep) write the same outbox; a poll of
// `id > last` on SQLite's primary key costs tens of microseconds, and
// SQLite's single writer assigns ids in commit order, so nothing is
// skipped.
type hub struct {
	src   Outbox
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	last    int64
	subs    map[*subscription]struct{}
	changed chan struct{} // closed and replaced whenever last advances
	closed  bool
}

func newHub(src Outbox, every time.Duration, log *slog.Logger) *hub {
	return &hub{src: src, every: every, log: log, subs: map[*subscription]struct{}{}, changed: make(chan struct{})}
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

// run polls until ctx ends, then ends every subscription.
func (h *hub) run(ctx context.Context) {
	defer h.close()
	t := time.NewTicker(h.every)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
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
