package backoffice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"camvault/catalog"
)

// WebhookStore keeps each webhook's delivery position in the catalog.
type WebhookStore interface {
	EnsureWebhook(ctx context.Context, url string, now time.Time) (catalog.WebhookState, error)
	WebhookDelivered(ctx context.Context, url string, id int64, at time.Time) error
	WebhookFailed(ctx context.Context, url string, at time.Time, why string) error
}

// checkWebhookURL accepts absolute http and https URLs only.
func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("webhook %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook %q: want an http:// or https:// URL", s)
	}
	return nil
}

// Singleton keeps a job on one node at a time: the catalog's advisory
// locks on PostgreSQL, where several nodes deliver the same webhooks.
type Singleton interface {
	Exclusive(ctx context.Context, job string, fn func(context.Context) error) (ran bool, err error)
}

// webhook delivers the outbox to one URL, in outbox order, one alert at a
// time: the next is sent only once the receiver acknowledged the last one
// with a 2xx and that is recorded in the catalog. A crash between the
// receiver's 2xx and that record means the alert is sent again after the
// restart (at least once); otherwise each alert is sent until acknowledged
// and then never again. Where the catalog is shared (Singleton), one node
// at a time delivers a URL: a batch runs under the URL's lock and starts
// from the position the catalog holds, so the nodes take turns and none
// sends what another already delivered.
type webhook struct {
	svc *Service
	url string
	pos int64 // last acknowledged outbox id
}

func (w *webhook) run(ctx context.Context) {
	s := w.svc
	lock, shared := s.cat.(Singleton)
	for ctx.Err() == nil {
		last, changed := s.hub.position()
		if last <= w.pos {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		if !shared {
			if !w.batch(ctx) {
				sleep(ctx, s.cfg.RetryMin)
			}
			continue
		}
		progress := false
		ran, err := lock.Exclusive(ctx, "webhook "+w.url, func(ctx context.Context) error {
			st, err := s.cat.EnsureWebhook(ctx, w.url, s.cfg.Now())
			if err != nil {
				return err
			}
			w.pos = max(w.pos, st.Delivered)
			if w.pos >= last { // another node's turn delivered it all
				progress = true
				return nil
			}
			progress = w.batch(ctx)
			return nil
		})
		if err != nil && ctx.Err() == nil {
			s.log.Error("webhook: take its turn", "url", w.url, "err", err)
		}
		if err != nil || !ran || !progress {
			// Another node delivers this URL now (or the catalog failed):
			// look again in a while. Its position moves in the catalog,
			// which the next turn starts from.
			sleep(ctx, s.cfg.RetryMin)
		}
	}
}

// batch delivers one page of the outbox after pos; false when it read
// nothing (or failed to), and the caller waits before it tries again.
func (w *webhook) batch(ctx context.Context) bool {
	s := w.svc
	page, err := s.cat.AlertsAfter(ctx, w.pos, pageSize)
	if err != nil || len(page) == 0 {
		if err != nil && ctx.Err() == nil {
			s.log.Error("webhook: read outbox", "url", w.url, "err", err)
		}
		return false
	}
	for _, a := range page {
		if !w.deliver(ctx, a) {
			break
		}
		w.pos = a.ID
	}
	return true
}

// deliver sends a until a 2xx, backing off exponentially with jitter
// between attempts; false when ctx ended first.
func (w *webhook) deliver(ctx context.Context, a catalog.Alert) bool {
	s := w.svc
	body, err := json.Marshal(a)
	if err != nil { // a map from JSON always marshals; never skip an alert silently
		s.log.Error("webhook: encode alert", "id", a.ID, "err", err)
		return false
	}
	delay := s.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := w.post(a, body)
		now := s.cfg.Now()
		// Recorded even when shutting down: the receiver has the alert,
		// and a restart must not send it again.
		rec, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err == nil {
			if derr := s.cat.WebhookDelivered(rec, w.url, a.ID, now); derr != nil {
				s.log.Error("webhook: record delivery (it may be sent again after a restart)", "url", w.url, "id", a.ID, "err", derr)
			}
			cancel()
			s.metrics.webhookDelivered.Inc()
			s.metrics.delivery.WithLabelValues("webhook").Observe(now.Sub(a.At).Seconds())
			if attempt > 1 {
				s.log.Info("webhook delivered after retries", "url", w.url, "id", a.ID, "attempts", attempt)
			}
			return true
		}
		if ferr := s.cat.WebhookFailed(rec, w.url, now, err.Error()); ferr != nil {
			s.log.Error("webhook: record failed attempt", "url", w.url, "err", ferr)
		}
		cancel()
		s.metrics.webhookFailed.Inc()
		// Log the first failure and then once a doubling, not every retry.
		if attempt&(attempt-1) == 0 {
			s.log.Warn("webhook delivery failed; retrying", "url", w.url, "id", a.ID, "attempt", attempt, "err", err)
		}
		// Full jitter over the upper half: receivers coming back are not
		// hit by every sender at once.
		wait := delay/2 + rand.N(delay/2+1)
		if !sleep(ctx, wait) {
			return false
		}
		delay = min(delay*2, s.cfg.RetryMax)
	}
}

// post makes one attempt. It is not tied to shutdown: an attempt under way
// finishes (within RequestTimeout), so its outcome is known and recorded.
func (w *webhook) post(a catalog.Alert, body []byte) error {
	s := w.svc
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "camvault-webhook/1")
	req.Header.Set(HeaderEvent, a.Type)
	req.Header.Set(HeaderDelivery, strconv.FormatInt(a.ID, 10))
	req.Header.Set(HeaderSignature, SignatureHeader(s.cfg.WebhookSecret, s.cfg.Now(), body))
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	// Drain a little so the connection is reused; never read an unbounded body.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
