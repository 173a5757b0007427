package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Alert is an outbox entry.
type Alert struct {
	ID       int64          `json:"id"`
	Type     string         `json:"type"`
	Camera   string         `json:"camera"`
	Incident string         `json:"incident,omitempty"`
	At       time.Time      `json:"at"`
	Data     map[string]any `json:"data,omitempty"`
}

func insertAlert(ctx context.Context, tx *dbTx, typ, camera, incident string, at time.Time, data map[string]any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	if q := tx.d.serialiseAlerts; q != "" {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("lock the alert outbox: %w", err)
		}
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO alerts(type, camera, incident, at, data) VALUES(?,?,?,?,?) RETURNING id`,
		typ, camera, incident, at, string(b)).Scan(&id); err != nil {
		return err
	}
	if q := tx.d.notifyAlert; q != "" {
		if _, err := tx.ExecContext(ctx, q, strconv.FormatInt(id, 10)); err != nil {
			return fmt.Errorf("notify alert %d: %w", id, err)
		}
	}
	tx.alerted = true
	return nil
}

// AddAlert writes one event to the outbox on its own: events that are not
// part of a larger change (a camera's warning or location, shed derived
// work, a degraded store).
func (c *Catalog) AddAlert(ctx context.Context, typ, camera, incident string, at time.Time, data map[string]any) error {
	return c.tx(ctx, func(tx *dbTx) error {
		return insertAlert(ctx, tx, typ, camera, incident, at, data)
	})
}

// AlertsAfter returns outbox entries with id > after, oldest first.
func (c *Catalog) AlertsAfter(ctx context.Context, after int64, limit int) ([]Alert, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, type, camera, coalesce(incident,''), at, data FROM alerts WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	return scanAlerts(rows, err)
}

// AlertsBefore returns outbox entries with id < before, newest first: the
// most recent alerts, read backwards a page at a time (the Live page opens
// with them).
func (c *Catalog) AlertsBefore(ctx context.Context, before int64, limit int) ([]Alert, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT id, type, camera, coalesce(incident,''), at, data FROM alerts WHERE id < ? ORDER BY id DESC LIMIT ?`, before, limit)
	return scanAlerts(rows, err)
}

func scanAlerts(rows *sql.Rows, err error) ([]Alert, error) {
	return scanAll(rows, err, "read alerts", func(sc rowScanner) (Alert, error) {
		var a Alert
		var at dbTime
		var data string
		if err := sc.Scan(&a.ID, &a.Type, &a.Camera, &a.Incident, &at, &data); err != nil {
			return a, err
		}
		a.At = at.T
		_ = json.Unmarshal([]byte(data), &a.Data)
		return a, nil
	})
}
