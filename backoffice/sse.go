package backoffice

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"camvault/catalog"
)

// serveEvents is GET /api/v1/events: the alert outbox as server-sent
// events, filtered by the caller's role. A client resumes with
// Last-Event-ID (or ?after=ID where it cannot set headers) and gets
// everything after that id it may see, then the live feed.
func (s *Service) serveEvents(w http.ResponseWriter, r *http.Request, who Principal) {
	after, resume, err := resumePoint(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.ctx == nil || s.ctx.Err() != nil {
		http.Error(w, "alert delivery is not running", http.StatusServiceUnavailable)
		return
	}
	// Subscribe before reading history: what is committed after `from`
	// arrives on the subscription, what is before it is read from the
	// catalog, and nothing falls between.
	sub, from := s.hub.subscribe(s.cfg.ClientBuffer)
	defer s.hub.unsubscribe(sub)
	if !resume || after > from {
		after = from
	}
	s.metrics.sseClients.Inc()
	defer s.metrics.sseClients.Dec()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a reverse proxy must not hold events back
	w.WriteHeader(http.StatusOK)
	st := &sseStream{w: w, bw: bufio.NewWriterSize(w, 4<<10), rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}
	// The first frame tells the client the stream is live (and how soon to
	// reconnect); from here on every committed alert reaches it.
	if st.write("retry: 2000\n: camvault alerts for "+sanitize(who.Name)+" ("+string(who.Role)+")\n\n") != nil {
		return
	}
	live := false // history replayed from the catalog is not counted as delivery latency
	send := func(a catalog.Alert) error {
		after = a.ID
		if !MayReceive(who.Role, a.Type) {
			return nil
		}
		if err := st.event(a); err != nil {
			s.writeFailed(err, who, after)
			return err
		}
		if live {
			s.metrics.delivery.WithLabelValues("sse").Observe(s.cfg.Now().Sub(a.At).Seconds())
		}
		return nil
	}
	for after < from {
		if s.ctx.Err() != nil || r.Context().Err() != nil {
			return
		}
		page, err := s.cat.AlertsAfter(r.Context(), after, pageSize)
		if err != nil {
			s.log.Error("sse: read outbox", "err", err)
			return
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			if a.ID > from {
				break
			}
			if send(a) != nil {
				return
			}
		}
		if page[len(page)-1].ID >= from {
			break
		}
	}
	live = true
	beat := time.NewTicker(s.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case a, ok := <-sub.c:
			if !ok {
				if sub.overflowed {
					s.metrics.sseDropped.Inc()
					s.log.Warn("sse: client too slow, disconnected (it resumes with Last-Event-ID)", "who", who.Name, "last_id", after)
				}
				return
			}
			if a.ID <= after {
				continue
			}
			if send(a) != nil {
				return
			}
		case <-beat.C:
			// A user disabled (or a token revoked) meanwhile loses the
			// stream within a heartbeat.
			if now, err := s.auth.Authenticate(r); err != nil || now.Role != who.Role {
				return
			}
			if err := st.write(": ping\n\n"); err != nil {
				s.writeFailed(err, who, after)
				return
			}
		}
	}
}

// writeFailed counts a client whose socket stopped taking events as a
// slow client dropped (a client that went away is not).
func (s *Service) writeFailed(err error, who Principal, after int64) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.metrics.sseDropped.Inc()
		s.log.Warn("sse: client stopped reading, disconnected (it resumes with Last-Event-ID)", "who", who.Name, "at_id", after)
	}
}

// resumePoint reads Last-Event-ID, else ?after=.
func resumePoint(r *http.Request) (after int64, ok bool, err error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, false, errors.New("Last-Event-ID / after: want a non-negative outbox id")
	}
	return n, true, nil
}

// sseStream writes frames, each flushed at once and bounded in time.
type sseStream struct {
	w       http.ResponseWriter
	bw      *bufio.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func (st *sseStream) write(frame string) error {
	// Unsupported by some writers (tests' recorders): then no deadline.
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.timeout))
	if _, err := st.bw.WriteString(frame); err != nil {
		return err
	}
	if err := st.bw.Flush(); err != nil {
		return err
	}
	return st.rc.Flush()
}

// event writes one alert: `event:` its type, `id:` its outbox id, `data:`
// its JSON on one line.
func (st *sseStream) event(a catalog.Alert) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.Grow(len(data) + len(a.Type) + 40)
	b.WriteString("event: ")
	b.WriteString(sanitize(a.Type))
	b.WriteString("\nid: ")
	b.WriteString(strconv.FormatInt(a.ID, 10))
	b.WriteString("\ndata: ")
	b.Write(data) // encoding/json never emits a raw newline
	b.WriteString("\n\n")
	return st.write(b.String())
}

// sanitize keeps a value on its SSE line.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
