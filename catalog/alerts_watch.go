package catalog

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
)

// ListenerSuffix ends the application_name of a node's LISTEN
// connection, after the catalog URL's own application_name (or
// "camvault"), so an operator (or a test) can find it in
// pg_stat_activity.
const ListenerSuffix = "-alerts-listener"

// localWakes are the outbox watchers of this process, woken after each
// commit of a transaction that queued an alert.
type localWakes struct {
	mu   sync.Mutex
	next int
	fns  map[int]func()
}

func (w *localWakes) add(fn func()) (remove func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = map[int]func(){}
	}
	id := w.next
	w.next++
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.fns, id)
	}
}

func (w *localWakes) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, fn := range w.fns {
		fn()
	}
}

// WatchesEveryWriter reports whether WatchAlerts hears alerts committed
// by every process (PostgreSQL's notifications reach every node), so
// that a reader's poll of the outbox is only a safety net; on SQLite it
// hears this process alone, and alerts written by another (the CLI) are
// found by polling.
func (c *Catalog) WatchesEveryWriter() bool { return c.pg != nil }

// WatchAlerts calls wake, until ctx ends, whenever an alert may have been
// committed: after each of this process's commits that queued one and, on
// PostgreSQL, on each notification of the outbox's channel from any node
// and each time its listening connection is (re)established, since
// notifications sent while it was down are lost. wake must not block; it
// is a hint to read the outbox after the last id seen, which holds the
// truth. onErr (may be nil) hears why the listening connection was lost;
// it reconnects at once, then backing off up to ten seconds while the
// server cannot be reached. It returns ctx's error.
func (c *Catalog) WatchAlerts(ctx context.Context, wake func(), onErr func(error)) error {
	defer c.wakes.add(wake)()
	if c.pg == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	var delay time.Duration
	var connected time.Time // when the last connection was made; zero after a failed dial
	backoff := func() { delay = min(max(2*delay, 100*time.Millisecond), 10*time.Second) }
	l := &pgxlisten.Listener{
		// The backoff is Connect's: pgxlisten's own delay is fixed.
		ReconnectDelay: -1,
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			if !connected.IsZero() {
				// A connection that lasted is dialled again at once; one
				// lost as soon as made (LISTEN refused, say) backs off too.
				if time.Since(connected) < time.Second {
					backoff()
				} else {
					delay = 0
				}
			}
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				case <-t.C:
				}
			}
			cfg := c.pg.Copy()
			app := cfg.RuntimeParams["application_name"]
			if app == "" {
				app = "camvault"
			}
			cfg.RuntimeParams["application_name"] = app + ListenerSuffix
			conn, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				backoff()
				connected = time.Time{}
				return nil, fmt.Errorf("connect the alert listener: %w", err)
			}
			connected = time.Now()
			return conn, nil
		},
		LogError: func(ctx context.Context, err error) {
			if onErr != nil && ctx.Err() == nil {
				onErr(err)
			}
		},
	}
	l.Handle(alertChannel, alertWaker(wake))
	return l.Listen(ctx)
}

// alertWaker wakes on every notification and on every (re)connection
// (pgxlisten's backlog: what was committed while no one listened).
type alertWaker func()

func (w alertWaker) HandleNotification(context.Context, *pgconn.Notification, *pgx.Conn) error {
	w()
	return nil
}

func (w alertWaker) HandleBacklog(context.Context, string, *pgx.Conn) error {
	w()
	return nil
}
