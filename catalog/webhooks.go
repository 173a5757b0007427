package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// WebhookState is where delivery of the alert outbox to one webhook URL
// stands: every alert with an id up to Delivered has been acknowledged
// with a 2xx; Attempts counts the failed tries at the next one.
type WebhookState struct {
	URL         string    `json:"url"`
	Delivered   int64     `json:"delivered"`
	Attempts    int       `json:"attempts"`
	LastAttempt time.Time `json:"last_attempt_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// LastAlertID returns the highest outbox id (0 when the outbox is empty).
func (c *Catalog) LastAlertID(ctx context.Context) (int64, error) {
	var id int64
	if err := c.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM alerts`).Scan(&id); err != nil {
		return 0, fmt.Errorf("last alert id: %w", err)
	}
	return id, nil
}

// EnsureWebhook returns url's delivery state, creating it on first sight
// positioned at the outbox's current end: a newly configured webhook gets
// the alerts from now on, not the whole history.
func (c *Catalog) EnsureWebhook(ctx context.Context, url string, now time.Time) (WebhookState, error) {
	var st WebhookState
	err := c.tx(ctx, func(tx *dbTx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries(url, delivered, created_at)
			VALUES(?, (SELECT coalesce(max(id), 0) FROM alerts), ?) ON CONFLICT(url) DO NOTHING`, url, now); err != nil {
			return err
		}
		var err error
		st, err = scanWebhook(tx.QueryRowContext(ctx, `SELECT url, delivered, attempts, last_attempt_at, last_error, created_at
			FROM webhook_deliveries WHERE url = ?`, url))
		return err
	})
	if err != nil {
		return st, fmt.Errorf("webhook state of %s: %w", url, err)
	}
	return st, nil
}

// Webhooks returns every webhook's delivery state, by URL.
func (c *Catalog) Webhooks(ctx context.Context) ([]WebhookState, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT url, delivered, attempts, last_attempt_at, last_error, created_at
		FROM webhook_deliveries ORDER BY url`)
	return scanAll(rows, err, "list webhooks", scanWebhook)
}

func scanWebhook(r rowScanner) (WebhookState, error) {
	var st WebhookState
	var last, created dbTime
	var lastErr sql.NullString
	if err := r.Scan(&st.URL, &st.Delivered, &st.Attempts, &last, &lastErr, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return st, ErrNotFound
		}
		return st, err
	}
	st.LastAttempt = last.T
	st.LastError = lastErr.String
	st.CreatedAt = created.T
	return st, nil
}

// WebhookDelivered records that url acknowledged alert id: the position
// moves forward (never back) and the failed attempts reset.
func (c *Catalog) WebhookDelivered(ctx context.Context, url string, id int64, at time.Time) error {
	res, err := c.db.ExecContext(ctx, `UPDATE webhook_deliveries SET delivered = CASE WHEN delivered > ?1 THEN delivered ELSE ?1 END,
		attempts = 0, last_attempt_at = ?2, last_error = NULL WHERE url = ?3`, id, at, url)
	return webhookUpdated(res, err, url)
}

// WebhookFailed records a failed attempt to deliver the next alert to url.
func (c *Catalog) WebhookFailed(ctx context.Context, url string, at time.Time, why string) error {
	res, err := c.db.ExecContext(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = ?, last_error = ?
		WHERE url = ?`, at, why, url)
	return webhookUpdated(res, err, url)
}

func webhookUpdated(res sql.Result, err error, url string) error {
	if err != nil {
		return fmt.Errorf("update webhook %s: %w", url, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update webhook %s: %w", url, ErrNotFound)
	}
	return nil
}
