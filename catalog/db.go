package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// dialect is what differs between the two engines. Queries are written
// once, with ? placeholders (or ?N where one argument is used twice) and
// times passed as time.Time; db and tx rewrite both for the engine in
// one place, so no query and no caller knows which engine runs.
type dialect struct {
	name string
	// dollar: placeholders are $1, $2... (PostgreSQL) instead of ?.
	dollar bool
	// forUpdate is appended to a SELECT that reads a row the transaction
	// goes on to change, where another connection may change it meanwhile
	// (an incident's chain head, a camera whose incident is chosen).
	// SQLite has one writer at a time and no row locks: empty there.
	forUpdate string
	// serialiseAudit takes the lock that keeps the audit trail one chain
	// when transactions on several connections append to it (PostgreSQL);
	// empty where one writer at a time is the engine's rule.
	serialiseAudit string
	// serialiseAlerts makes alert ids follow commit order where several
	// connections insert alerts at once (PostgreSQL): a sequence hands out
	// ids at insert, so without it a reader of `id > last` could pass over
	// an id whose transaction commits after a later one's. Held from the
	// insert to the commit; SQLite's one writer already does this.
	serialiseAlerts string
	// notifyAlert wakes every node listening on the outbox (alertChannel)
	// when the transaction commits; empty where one node is all there is.
	notifyAlert string
	// shared: several nodes may open the catalog (PostgreSQL). A SQLite
	// catalog is its one node's, whatever that node is called now (a
	// container's host name changes at every start).
	shared bool
}

// alertChannel is the PostgreSQL notification channel of the alert
// outbox. A notification only wakes its listeners: its payload (the id)
// is a hint, and the outbox is read after the last id each has seen.
const alertChannel = "camvault_alerts"

var (
	sqliteDialect = &dialect{name: "sqlite"}
	pgDialect     = &dialect{
		name:      "postgres",
		dollar:    true,
		shared:    true,
		forUpdate: " FOR UPDATE",
		// Transaction-scoped: released at commit or rollback. The key is
		// the catalog's alone (ASCII "cvaudit").
		serialiseAudit: `SELECT pg_advisory_xact_lock(27989425469679988)`,
		// ASCII "cvalerts", the outbox's own key.
		serialiseAlerts: `SELECT pg_advisory_xact_lock(7166182850165781619)`,
		notifyAlert:     `SELECT pg_notify('` + alertChannel + `', ?::text)`,
	}
)

// tsLayout has a fixed width, so times stored as text in SQLite compare
// correctly as text in SQL (retention queries compare deadlines).
const tsLayout = "2006-01-02T15:04:05.000000000Z"

// query rewrites q's placeholders for the engine.
func (d *dialect) query(q string) string {
	if !d.dollar {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case ch == '\'':
			quoted = !quoted
		case ch == '?' && !quoted:
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 { // ?N names its argument
				b.WriteString(q[i+1 : j])
				i = j - 1
			} else {
				n++
				fmt.Fprint(&b, n)
			}
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// args converts the arguments for the engine: a time is fixed-width UTC
// text in SQLite (how catalogs have always stored it) and a timestamptz,
// to the microsecond, in PostgreSQL.
func (d *dialect) args(args []any) []any {
	var out []any
	for i, a := range args {
		t, ok := a.(time.Time)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		if d.dollar {
			out[i] = t.UTC()
		} else {
			out[i] = t.UTC().Format(tsLayout)
		}
	}
	if out == nil {
		return args
	}
	return out
}

// dbTime scans a time the engine stored: text in SQLite, timestamptz in
// PostgreSQL, or NULL (Valid false).
type dbTime struct {
	T     time.Time
	Valid bool
}

func (t *dbTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*t = dbTime{}
		return nil
	case time.Time:
		*t = dbTime{T: v.UTC(), Valid: true}
		return nil
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	}
	return fmt.Errorf("catalog: a time stored as %T", v)
}

func (t *dbTime) parse(s string) error {
	p, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("catalog: stored time %q: %w", s, err)
	}
	*t = dbTime{T: p.UTC(), Valid: true}
	return nil
}

// ptr is the time, or nil when NULL.
func (t dbTime) ptr() *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.T
	return &v
}

var _ sql.Scanner = (*dbTime)(nil)

// db is the catalog's database with the dialect applied to every query.
type db struct {
	*sql.DB
	d *dialect
}

func (db *db) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return db.DB.ExecContext(ctx, db.d.query(q), db.d.args(args)...)
}

func (db *db) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.DB.QueryContext(ctx, db.d.query(q), db.d.args(args)...)
}

func (db *db) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(ctx, db.d.query(q), db.d.args(args)...)
}

// dbTx is a transaction with the dialect applied to every query.
type dbTx struct {
	tx *sql.Tx
	d  *dialect
	// alerted is set when the transaction queued an alert: once it
	// commits, the catalog wakes this process's outbox readers.
	alerted bool
}

func (tx *dbTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, tx.d.query(q), tx.d.args(args)...)
}

func (tx *dbTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, tx.d.query(q), tx.d.args(args)...)
}

func (tx *dbTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, tx.d.query(q), tx.d.args(args)...)
}
