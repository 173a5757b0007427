package camera

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// EventSink records what cameras report besides media: the spoken
// warnings that precede a recording, and where the officer is. The node
// puts them in the catalog's alert outbox for the backoffice.
type EventSink interface {
	CameraEvent(ctx context.Context, cam Camera, typ string, at time.Time, data map[string]any) error
}

// Event types as they appear in the outbox.
const (
	EventWarning  = "camera.warning"
	EventLocation = "camera.location"
	// EventAssist is the officer asking the control room to watch ("watch
	// me"): an urgent alert, about the incident the camera is recording
	// when there is one.
	EventAssist = "incident.assist"
)

// EventPattern is the route the handler NewEventHandler returns is mounted
// on (http.ServeMux syntax): it reads the camera id from {camera}.
const EventPattern = "POST /cameras/{camera}/events"

// cameraEvent is the body of POST /cameras/<id>/events.
type cameraEvent struct {
	Type string `json:"type"` // "warning", "location" or "assist"
	// N is the warning's number: the protocol is two spoken warnings
	// before the camera records.
	N int `json:"n,omitempty"`
	// Lat, Lon in degrees (WGS 84); Accuracy in metres, optional.
	Lat      *float64 `json:"lat,omitempty"`
	Lon      *float64 `json:"lon,omitempty"`
	Accuracy float64  `json:"accuracy,omitempty"`
}

const maxEventBytes = 4 << 10

func (e cameraEvent) alert() (string, map[string]any, error) {
	switch e.Type {
	case "warning":
		if e.N != 1 && e.N != 2 || e.Lat != nil || e.Lon != nil {
			return "", nil, errors.New(`a warning is {"type":"warning","n":1} or n 2`)
		}
		return EventWarning, map[string]any{"n": e.N}, nil
	case "location":
		if e.Lat == nil || e.Lon == nil || math.IsNaN(*e.Lat) || math.Abs(*e.Lat) > 90 || math.IsNaN(*e.Lon) ||
			math.Abs(*e.Lon) > 180 || e.Accuracy < 0 || e.Accuracy > 1e6 || e.N != 0 {
			return "", nil, errors.New(`a location is {"type":"location","lat":-90..90,"lon":-180..180[,"accuracy":metres]}`)
		}
		d := map[string]any{"lat": *e.Lat, "lon": *e.Lon}
		if e.Accuracy > 0 {
			d["accuracy"] = e.Accuracy
		}
		return EventLocation, d, nil
	case "assist":
		if e.N != 0 || e.Lat != nil || e.Lon != nil || e.Accuracy != 0 {
			return "", nil, errors.New(`an assist request is {"type":"assist"}`)
		}
		return EventAssist, map[string]any{"urgent": true}, nil
	}
	return "", nil, fmt.Errorf("unknown event type %s (warning, location, assist)", SafeID(e.Type))
}

// eventLimiter keeps one camera from flooding the outbox (each event is a
// durable catalog write): a burst of 10, then 2 per second.
type eventLimiter struct {
	mu  sync.Mutex
	per map[string]*rate.Limiter
}

func (l *eventLimiter) allow(camera string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per == nil {
		l.per = map[string]*rate.Limiter{}
	}
	lim := l.per[camera]
	if lim == nil {
		lim = rate.NewLimiter(2, 10)
		l.per[camera] = lim
	}
	return lim.Allow()
}

// eventHandler takes a camera's event: POST /cameras/<id>/events with the
// camera's bearer and a JSON body.
type eventHandler struct {
	auth    Authenticator
	sink    EventSink
	log     *slog.Logger
	refused func(r *http.Request, code int, why string)
	limit   eventLimiter
}

// NewEventHandler serves the camera-events endpoint, to be mounted on
// EventPattern. It authenticates the camera by its bearer and hands what
// it posts to sink; a nil sink answers 501. refused, when set, sees every
// refusal before it is answered, so the listener serving the endpoint can
// log and count them with its own. The handler keeps each camera's rate
// limit: build one per listener.
func NewEventHandler(a Authenticator, sink EventSink, log *slog.Logger, refused func(r *http.Request, code int, why string)) http.Handler {
	return &eventHandler{auth: a, sink: sink, log: log, refused: refused}
}

func (h *eventHandler) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	if h.refused != nil {
		h.refused(r, code, why)
	}
	Refuse(w, code, why)
}

func (h *eventHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cam, err := Bearer(r, h.auth)
	if err != nil {
		h.refuse(w, r, http.StatusUnauthorized, err.Error())
		return
	}
	if h.sink == nil {
		h.refuse(w, r, http.StatusNotImplemented, "camera events are not recorded by this node")
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		h.refuse(w, r, http.StatusUnsupportedMediaType, "an event must be application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBytes))
	if err != nil {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("event larger than %d bytes", maxEventBytes))
		return
	}
	var ev cameraEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil || dec.More() {
		h.refuse(w, r, http.StatusBadRequest, "malformed event JSON")
		return
	}
	typ, data, err := ev.alert()
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if !h.limit.allow(cam.ID) {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, r, http.StatusTooManyRequests, "too many events from camera "+cam.ID)
		return
	}
	if err := h.sink.CameraEvent(r.Context(), cam, typ, time.Now(), data); err != nil {
		h.log.Error("camera event not recorded", "camera", cam.ID, "type", typ, "err", err)
		http.Error(w, "event not recorded", http.StatusInternalServerError)
		return
	}
	h.log.Info("camera event", "camera", cam.ID, "type", typ)
	w.WriteHeader(http.StatusAccepted)
}
