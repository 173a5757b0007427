package catalog

import (
	"context"
	"database/sql/driver"
	"fmt"
	"hash/fnv"
	"time"
)

// lockCheckEvery is how often Exclusive makes sure that the connection
// holding a job's lock is still alive.
const lockCheckEvery = 2 * time.Second

// Exclusive runs fn unless another holder of the job's lock, on any node
// sharing the catalog, runs it at this moment: then it returns ran=false
// at once. On PostgreSQL the lock is a session-level advisory lock on a
// connection held for fn's duration; the context fn gets ends if that
// connection is lost (the lock is then free for another node), so a job
// must be safe to stop at any point and to run again (every catalog
// singleton is). On SQLite, where one node is all there is, fn always
// runs. Jobs are named by what they do ("retention sweep", "webhook URL").
func (c *Catalog) Exclusive(ctx context.Context, job string, fn func(context.Context) error) (ran bool, err error) {
	if c.pg == nil {
		return true, fn(ctx)
	}
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", job, err)
	}
	key := lockKey(job)
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Close()
		return false, fmt.Errorf("lock %s: %w", job, err)
	}
	if !got {
		conn.Close()
		return false, nil
	}
	fctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(lockCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
				if conn.PingContext(fctx) != nil {
					cancel()
					return
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-watched
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ucancel()
		if _, uerr := conn.ExecContext(uctx, `SELECT pg_advisory_unlock($1)`, key); uerr != nil {
			// A connection that may still hold the lock must not go back
			// to the pool: closed, its session (and lock) ends.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}()
	return true, fn(fctx)
}

// lockKey maps a job's name to its advisory lock key.
func lockKey(job string) int64 {
	h := fnv.New64a()
	h.Write([]byte("camvault job: " + job))
	return int64(h.Sum64())
}
