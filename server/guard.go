package server

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"camvault/internal/netguard"
)

// Connection limits a node takes when its Config leaves them zero. The
// caps in total are shares of the open-file limit (fileShares), so that
// however many clients connect, the descriptors the recording itself
// needs (catalog, chunk writes, UDP sockets) remain.
const (
	// Per address: high enough that a fleet behind one NAT address
	// (carrier-grade NAT on mobile links) reconnecting at once is not
	// refused, low enough that one address cannot hold a listener's share.
	DefaultRTSPPerAddr = 64  // RTSP connections not yet recording, per address
	DefaultWHIPPerAddr = 128 // WHIP and camera-event HTTP connections, per address
	// DefaultRTSPAuthTimeout is how long an RTSP connection has to
	// authenticate and start recording: a camera needs well under a second.
	DefaultRTSPAuthTimeout = 10 * time.Second

	fileReserve        = 64   // descriptors kept for the node itself, plus 1/16 of the limit
	maxDefaultRTSP     = 4096 // above this a node needs more than descriptors: say it with the flag
	maxDefaultWHIP     = 1024
	maxDefaultBackoff  = 512
	minDefaultListener = 4
)

// fileShares divides the open-file limit between the listeners: half of
// what the node does not keep for itself to RTSP (each camera holds a
// connection for as long as it records), a quarter to WHIP's HTTP (short
// requests; the media comes over one UDP port) and an eighth to the
// backoffice.
func fileShares(limit uint64) (rtsp, whip, backoffice int) {
	reserve := fileReserve + limit/16
	var free uint64
	if limit > reserve {
		free = limit - reserve
	}
	share := func(div uint64, most int) int {
		return max(minDefaultListener, int(min(free/div, uint64(most))))
	}
	return share(2, maxDefaultRTSP), share(4, maxDefaultWHIP), share(8, maxDefaultBackoff)
}

// resolveLimits fills in the zero values of l: max for the cap in total
// and perAddr per address; negative values become "no cap".
func resolveLimits(l netguard.Limits, most, perAddr int) netguard.Limits {
	switch {
	case l.MaxConns == 0:
		l.MaxConns = most
	case l.MaxConns < 0:
		l.MaxConns = 0
	}
	switch {
	case l.MaxPerAddr == 0:
		l.MaxPerAddr = perAddr
	case l.MaxPerAddr < 0:
		l.MaxPerAddr = 0
	}
	return l
}

// listenerLimits raises the open-file limit as far as it goes and sets
// the listeners' limits from it.
func (s *Server) listenerLimits() {
	soft, hard, err := netguard.RaiseFileLimit()
	if err != nil {
		s.log.Warn("open-file limit not raised", "err", err)
	}
	rtsp, whip, bo := fileShares(soft)
	s.cfg.RTSPLimits = resolveLimits(s.cfg.RTSPLimits, rtsp, DefaultRTSPPerAddr)
	s.cfg.WHIPLimits = resolveLimits(s.cfg.WHIPLimits, whip, DefaultWHIPPerAddr)
	if s.cfg.RTSPLimits.AuthTimeout == 0 {
		s.cfg.RTSPLimits.AuthTimeout = DefaultRTSPAuthTimeout
	}
	s.backofficeGuard = netguard.New("backoffice", netguard.Limits{MaxConns: bo}, s.log)
	if s.cfg.BackofficeOnly {
		s.log.Info("open-file limit and listener limits", "soft", soft, "hard", hard, "backoffice_max_conns", bo)
		return
	}
	s.log.Info("open-file limit and listener limits", "soft", soft, "hard", hard,
		"rtsp_max_conns", s.cfg.RTSPLimits.MaxConns, "rtsp_max_per_addr", s.cfg.RTSPLimits.MaxPerAddr,
		"rtsp_auth_timeout", s.cfg.RTSPLimits.AuthTimeout,
		"whip_max_conns", s.cfg.WHIPLimits.MaxConns, "whip_max_per_addr", s.cfg.WHIPLimits.MaxPerAddr,
		"backoffice_max_conns", bo)
}

// health is nil while every listener of the node serves; otherwise what
// does not, for /healthz (a load balancer then moves cameras elsewhere).
// s.healthChecks are further conditions a part of the node adds.
func (s *Server) health() error {
	checks := s.healthChecks
	if s.RTSP != nil {
		checks = append(checks[:len(checks):len(checks)], s.RTSP.Healthy)
	}
	if s.WHIP != nil {
		checks = append(checks[:len(checks):len(checks)], s.WHIP.Healthy)
	}
	var errs []error
	for _, check := range checks {
		errs = append(errs, check())
	}
	return errors.Join(errs...)
}

func (s *Server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	if err := s.health(); err != nil {
		http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok\n")
}

// guardCollector exports the listeners' guard counters and whether each
// listener serves.
type guardCollector struct {
	s                                           *Server
	open, refused, timeouts, retries, up, rests *prometheus.Desc
}

func newGuardCollector(s *Server) *guardCollector {
	l := []string{"listener"}
	return &guardCollector{s: s,
		open:     prometheus.NewDesc("camvault_listener_connections", "Connections open now.", l, nil),
		refused:  prometheus.NewDesc("camvault_listener_refused_total", "Connections closed at accept: a cap in total (max_conns) or per address (max_per_addr) was reached.", []string{"listener", "reason"}, nil),
		timeouts: prometheus.NewDesc("camvault_listener_auth_timeouts_total", "Connections closed because they did not authenticate in time.", l, nil),
		retries:  prometheus.NewDesc("camvault_listener_accept_retries_total", "Temporary accept errors (out of descriptors or buffers) waited out.", l, nil),
		up:       prometheus.NewDesc("camvault_listener_up", "1 while the listener accepts connections.", l, nil),
		rests:    prometheus.NewDesc("camvault_listener_restarts_total", "Times the listener stopped and was started again.", l, nil),
	}
}

func (c *guardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.refused, c.timeouts, c.retries, c.up, c.rests} {
		ch <- d
	}
}

func (c *guardCollector) Collect(ch chan<- prometheus.Metric) {
	type listener struct {
		name    string
		guard   *netguard.Guard
		healthy func() error
	}
	var ls []listener
	if c.s.RTSP != nil {
		ls = append(ls, listener{"rtsp", c.s.RTSP.Guard(), c.s.RTSP.Healthy})
		ch <- prometheus.MustNewConstMetric(c.rests, prometheus.CounterValue, float64(c.s.RTSP.Restarts.Load()), "rtsp")
	}
	if c.s.WHIP != nil {
		ls = append(ls, listener{"whip", c.s.WHIP.Guard(), c.s.WHIP.Healthy})
	}
	if c.s.backofficeGuard != nil {
		ls = append(ls, listener{"backoffice", c.s.backofficeGuard, func() error { return nil }})
	}
	for _, l := range ls {
		st := l.guard.Stats()
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Open), l.name)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.RefusedTotal), l.name, "max_conns")
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.RefusedAddr), l.name, "max_per_addr")
		ch <- prometheus.MustNewConstMetric(c.timeouts, prometheus.CounterValue, float64(st.TimedOut), l.name)
		ch <- prometheus.MustNewConstMetric(c.retries, prometheus.CounterValue, float64(st.AcceptRetries), l.name)
		up := 1.0
		if l.healthy() != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, l.name)
	}
}
