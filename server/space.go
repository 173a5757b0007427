package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"camvault/internal/diskspace"
	"camvault/storage/fs"
)

// openSpace starts watching the free space of the data directory (the
// catalog) and of the fs store, creates the catalog's disk reserve, makes
// /healthz fail while the node takes no new incidents, and hands the
// monitor to the recorder. With a remote store (S3) chunk writes do not
// take the catalog's room, so only the catalog's disk is watched and
// chunks are never held back for it.
func (s *Server) openSpace() error {
	_, local := s.Store.(*fs.Store)
	paths := []string{s.dir.Root()}
	if local {
		paths = append(paths, s.dir.Chunks())
	}
	minFree := s.cfg.MinFree
	if minFree == (diskspace.Threshold{}) {
		minFree = DefaultMinFree
	}
	reserve := s.cfg.DiskReserve
	if reserve == 0 {
		reserve = DefaultDiskReserve
	}
	cfg := diskspace.Config{Paths: paths, MinFree: minFree, OnChange: s.spaceChanged, Log: s.log}
	if reserve > 0 {
		cfg.Reserve, cfg.ReserveSize = s.dir.Reserve(), reserve
	}
	m, err := diskspace.New(cfg)
	if err != nil {
		return err
	}
	s.space = m
	s.healthChecks = append(s.healthChecks, m.Accepting)
	if local {
		s.cfg.Recorder.Space = m
	} else {
		s.cfg.Recorder.Space = remoteChunks{m}
	}
	gauge := func(name, help string, v func(diskspace.State) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "camvault", Name: name, Help: help},
			func() float64 { return v(m.State()) })
	}
	s.Registry.MustRegister(
		gauge("disk_free_bytes", "Free space on the fullest watched file system (data directory, fs store) at the last check.",
			func(st diskspace.State) float64 { return float64(st.Free) }),
		gauge("disk_min_free_bytes", "The free space below which new incidents are refused (--min-free) on that file system.",
			func(st diskspace.State) float64 { return float64(st.Want) }),
		gauge("disk_reserve_released", "1 while the catalog's disk reserve is released: the disk filled, chunks are not written.",
			func(st diskspace.State) float64 { return b2f(st.Released) }),
		gauge("accepting_incidents", "1 while free space allows new incidents.",
			func(st diskspace.State) float64 { return b2f(!st.Low) }),
	)
	st := m.State()
	s.log.Info("free-space threshold and catalog reserve", "path", st.Path, "free", st.Free, "min_free", st.Want,
		"reserve", reserve, "reserve_released", st.Released)
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// remoteChunks is the monitor for a node whose chunks go to a remote
// store: their writes never take the catalog's room.
type remoteChunks struct{ *diskspace.Monitor }

func (remoteChunks) Writable() error { return nil }

// spaceChanged logs every change of the free-space state and puts
// storage.full and storage.recovered into the alert outbox: the monitor
// calls it after releasing the reserve, so there is room for the alert.
func (s *Server) spaceChanged(st diskspace.State) {
	typ := AlertStorageRecovered
	if st.Low {
		typ = AlertStorageFull
		s.log.Error("storage full: not accepting new incidents", "path", st.Path, "free", st.Free, "min_free", st.Want,
			"reserve_released", st.Released)
	} else {
		s.log.Info("storage recovered: accepting new incidents", "path", st.Path, "free", st.Free, "min_free", st.Want)
	}
	if s.lastSpaceAlert == typ {
		return // a change of the reserve alone: still the same incident of the disk
	}
	data := map[string]any{"path": st.Path, "free_bytes": st.Free, "min_free_bytes": st.Want, "reserve_released": st.Released}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Catalog.AddAlert(ctx, typ, "", "", time.Now(), data); err != nil {
		s.log.Error(typ+" alert", "err", err)
		return
	}
	s.lastSpaceAlert = typ
}

// serveReadyz answers whether the node should be sent new cameras: it is
// healthy (every listener serving, storage above its threshold) and not
// shutting down. A load balancer uses it to pick a node.
func (s *Server) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	err := s.health()
	if s.closing.Load() {
		err = errors.Join(err, errors.New("shutting down"))
	}
	if err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}
