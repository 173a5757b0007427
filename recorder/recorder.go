// Package recorder records camera sessions as incidents. It owns the
// session lifecycle (open or continue the camera's incident, cut the
// stream into segments, end the session) and assembles the pipeline the
// segments go through: seal → store → commit, each a package under
// stages/, with transcode as a side branch whose derived chunks join the
// same pipeline. The stages do the work; the recorder only wires them.
package recorder

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/prometheus/client_golang/prometheus"

	"camvault/camera"
	"camvault/catalog"
	"camvault/codec"
	"camvault/format/chunk"
	"camvault/format/container"
	"camvault/format/webm"
	"camvault/ingest"
	"camvault/media"
	"camvault/pipeline"
	"camvault/stages/commit"
	"camvault/stages/seal"
	"camvault/stages/segment"
	"camvault/stages/store"
	"camvault/stages/transcode"
	"camvault/storage"
)

// Config of the recorder; zero values take the defaults.
type Config struct {
	Retention       time.Duration // chunk deadline = recording time + Retention; default 28 days
	Grace           time.Duration // a reconnect within this continues the incident; default 60 s
	SegmentTarget   time.Duration // default 2 s
	SealWorkers     int           // default 2
	StoreWorkers    int           // default 8 (fsync-bound: more writers than cores pays)
	Queue           int           // per-stage queue length; default 64
	CheckpointEvery int           // default 30 chunks
	// SubmitWait is how long a segment may wait for room in the
	// pipeline (full because the store or the catalog is slow) before it
	// is dropped and recorded as a gap: the ingest reader is never held
	// up longer, so it keeps pace with the camera. Default 1 s, shorter
	// than a segment.
	SubmitWait time.Duration
	Transcode  TranscodeConfig
	Now        func() time.Time
	// Space, when set, is the node's free-space monitor: it decides
	// whether new incidents are taken and whether chunks may be written,
	// and hears of every write that failed, so that a full disk costs
	// footage but never the records of the loss.
	Space Space
	// Lease is how long a camera's lease lasts (catalog leases: one node
	// records a camera at a time), renewed every third of it while the
	// session lives; default catalog.DefaultLease.
	Lease time.Duration
}

// Space is what the recorder needs of a free-space monitor
// (internal/diskspace.Monitor).
type Space interface {
	// Accepting is nil while new incidents are taken, else why not.
	Accepting() error
	// Writable is nil while chunks may be written to the store, else why
	// not (the room left is the catalog's).
	Writable() error
	// Exhausted is told of a write that failed and reports whether it
	// freed room for another try.
	Exhausted(cause error) bool
}

func (c *Config) defaults() {
	if c.Retention == 0 {
		c.Retention = 28 * 24 * time.Hour
	}
	if c.Grace == 0 {
		c.Grace = 60 * time.Second
	}
	if c.SegmentTarget == 0 {
		c.SegmentTarget = 2 * time.Second
	}
	if c.SealWorkers <= 0 {
		c.SealWorkers = 2
	}
	if c.StoreWorkers <= 0 {
		c.StoreWorkers = 8
	}
	if c.Queue <= 0 {
		c.Queue = 64
	}
	if c.SubmitWait <= 0 {
		c.SubmitWait = time.Second
	}
	if c.Lease <= 0 {
		c.Lease = catalog.DefaultLease
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Transcode.Workers <= 0 {
		c.Transcode.Workers = DefaultTranscodeWorkers()
	}
}

// Recorder implements ingest.Recorder.
type Recorder struct {
	cfg        Config
	cat        *catalog.Catalog
	recipients []age.Recipient
	log        *slog.Logger

	writer     *store.Writer
	chunks     storage.ChunkStore
	committer  *commit.Committer
	src        *pipeline.Source[*media.Item]
	run        *pipeline.Run
	ctx        context.Context
	cancel     context.CancelFunc
	latency    prometheus.Histogram // from the segment's first frame arriving to durable
	cutDelay   prometheus.Histogram // from the segment's last frame arriving to durable
	startAlert prometheus.Histogram // from the first keyframe to incident.started in the outbox
	dropped    prometheus.Counter   // segments the pipeline had no room for
	derived    *transcode.Stage     // nil: no proxies or thumbnails
	ends       sync.WaitGroup       // session ends waiting for their derived work

	mu       sync.Mutex
	sessions map[*session]struct{}
	renewing map[string]context.CancelFunc // session id -> its lease renewal's stop
	closed   bool
}

var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 2.1, 2.2, 2.3, 2.4, 2.5, 2.75, 3, 3.5, 4, 5, 7.5, 10}

// New starts the recorder's pipeline. The ingest side is handed the
// recipients only: it cannot unwrap any data key.
func New(cfg Config, cat *catalog.Catalog, chunks storage.ChunkStore, recipients []age.Recipient,
	signer ed25519.PrivateKey, reg prometheus.Registerer, log *slog.Logger) (*Recorder, error) {
	cfg.defaults()
	if len(recipients) == 0 {
		return nil, errors.New("recorder: no recipients")
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{cfg: cfg, cat: cat, recipients: recipients, log: log, ctx: ctx, cancel: cancel,
		// Every chunk's intent is in the catalog before its put: no
		// object is ever unknown to it (RecoverInterrupted reconciles).
		writer:   &store.Writer{Store: chunks, Intents: cat, Now: cfg.Now},
		chunks:   chunks,
		sessions: map[*session]struct{}{},
		renewing: map[string]context.CancelFunc{},
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "camvault", Name: "ingest_to_durable_seconds",
			Help:    "Time from a segment's first frame reaching the server to its chunk being durable (stored and committed).",
			Buckets: latencyBuckets,
		}),
		startAlert: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "camvault", Name: "incident_started_alert_seconds",
			Help:    "Time from a new incident's first keyframe being depacketized to its incident.started alert being committed to the outbox.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "camvault", Name: "segments_dropped_total",
			Help: "Segments dropped, and recorded as gaps, because the pipeline had no room for them within the submit wait (a slow store or catalog).",
		}),
		cutDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "camvault", Name: "cut_to_durable_seconds",
			Help:    "Time from a segment's last frame reaching the server to its chunk being durable.",
			Buckets: latencyBuckets,
		}),
	}
	r.writer.Failed = r.storageFailed
	commitRetries := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "camvault", Subsystem: "commit", Name: "retries_total",
		Help: "Catalog writes of the commit stage that failed and were retried.",
	})
	r.committer = &commit.Committer{Catalog: cat, Signer: signer, Node: cat.Node(), Now: cfg.Now, CheckpointEvery: cfg.CheckpointEvery,
		Anchors: chunks, Alerts: cat, Log: log, Durable: r.durable, Retries: commitRetries,
		Ended: func(session string) {
			r.src.Forget(session)
			r.stopRenewing(session)
		}}
	var err error
	if r.writer.Metrics, err = store.NewMetrics(reg); err != nil {
		cancel()
		return nil, err
	}
	if cfg.Space != nil {
		r.writer.Gate, r.committer.Recover = cfg.Space.Writable, cfg.Space.Exhausted
		// Anchors too stay out of a full disk's last room: the signed
		// checkpoint is in the catalog and the Reanchorer writes its copy
		// once space returns.
		r.committer.Anchors = gatedAnchors{chunks, cfg.Space.Writable}
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.latency, r.cutDelay, r.startAlert, r.dropped, commitRetries} {
			if err := reg.Register(c); err != nil {
				cancel()
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	if cfg.Transcode.Enabled {
		if cfg.Transcode.Renderer == nil {
			// One thread per job: the workers are the parallelism, and the
			// CPU budget measures each job on its worker's thread.
			cfg.Transcode.Renderer = codec.NewProxyRenderer(codec.ProxyConfig{
				Width: codec.DefaultProxyWidth, Height: codec.DefaultProxyHeight, Bitrate: codec.DefaultProxyBitrate, Threads: 1})
		}
		d, err := transcode.New(transcode.Config{Workers: cfg.Transcode.Workers, Queue: cfg.Transcode.Queue,
			QueueBytes: cfg.Transcode.QueueBytes, CPU: cfg.Transcode.CPU}, cfg.Transcode.Renderer, reg, log)
		if err != nil {
			cancel()
			return nil, err
		}
		r.derived = d
	}
	m := pipeline.NewMetrics(reg, "camvault")
	r.src = pipeline.NewSource[*media.Item]("segments", cfg.Queue, m)
	sealed := pipeline.Then(ctx, pipeline.From(r.src), seal.Stage(cfg.SealWorkers), cfg.Queue)
	stored := pipeline.Then(ctx, sealed, r.writer.Stage(cfg.StoreWorkers), cfg.Queue)
	r.run = pipeline.Sink(ctx, stored, r.committer.Stage())
	return r, nil
}

// RecoverInterrupted settles what a crash or power cut left: first the
// chunks put whose commit never happened (commit.Reconcile: each is
// verified and committed in its session's chain, or quarantined with its
// deadline, or its intent dropped when the put never landed), then the
// sessions left running are ended (the catalog records the gap and the
// end) and each incident's head is signed, so the manifest says what was
// kept and what was lost before the camera reconnects. Call it once,
// before any camera is accepted.
func (r *Recorder) RecoverInterrupted(ctx context.Context) error {
	rec, err := commit.Reconcile(ctx, r.cat, r.chunks, r.cfg.Now, r.log)
	if err != nil {
		return fmt.Errorf("reconcile the chunk store with the catalog: %w", err)
	}
	if rec != (commit.Reconciled{}) {
		r.log.Warn("chunks stored before a server stop reconciled", "committed", rec.Committed,
			"quarantined", rec.Quarantined, "never_stored", rec.Dropped, "undecided", rec.Pending)
	}
	interrupted, err := r.cat.InterruptRunning(ctx, r.cfg.Now())
	if err != nil {
		return fmt.Errorf("end interrupted sessions: %w", err)
	}
	return r.signSettled(ctx, interrupted, "incident interrupted by a server stop")
}

// signSettled signs the head of each incident whose sessions a
// reconciliation just ended, so that the manifest's signed head says
// what was kept and what was lost, and logs each with what.
func (r *Recorder) signSettled(ctx context.Context, incidents []string, what string) error {
	c := &commit.Committer{Catalog: r.cat, Signer: r.committer.Signer, Node: r.committer.Node, Now: r.cfg.Now, Anchors: r.committer.Anchors}
	for _, inc := range incidents {
		// A store that refuses the anchor now must not keep the node
		// from recording: the signed checkpoint is in the catalog and the
		// server's re-anchoring writes its copy once the store takes it.
		if err := c.Checkpoint(ctx, inc); errors.Is(err, commit.ErrNotAnchored) {
			r.log.Warn("checkpoint of a settled incident not anchored yet", "incident", inc, "err", err)
		} else if err != nil {
			return err
		}
		r.log.Warn(what, "incident", inc)
	}
	return nil
}

// settleJob names the cluster-wide lock of SettleAbandoned.
const settleJob = "settle abandoned sessions"

// SettleAbandoned is the crash reconciliation of the other nodes, which a
// dead node cannot run: on one node of those sharing the catalog at a
// time (the catalog's lock; ran is false while another runs it), it ends
// the sessions whose camera's lease expired more than the grace window
// ago without any node taking the camera over, with their gap records
// (catalog.SettleAbandoned), and signs each settled incident's head with
// this node's key. Before the grace window has passed the camera may still
// reconnect, to any node, and continue the incident.
func (r *Recorder) SettleAbandoned(ctx context.Context) (settled []string, ran bool, err error) {
	ran, err = r.cat.Exclusive(ctx, settleJob, func(ctx context.Context) error {
		var err error
		if settled, err = r.cat.SettleAbandoned(ctx, r.cfg.Now(), r.cfg.Grace); err != nil {
			return err
		}
		return r.signSettled(ctx, settled, "incident of a node that stopped renewing its lease settled")
	})
	return settled, ran, err
}

// RunSettler calls SettleAbandoned every interval until ctx ends.
func (r *Recorder) RunSettler(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, _, err := r.SettleAbandoned(ctx); err != nil && ctx.Err() == nil {
			// The next round tries again: every step is safe to repeat.
			r.log.Error("settle other nodes' abandoned sessions", "err", err)
		}
	}
}

// Close ends every running session (their segments already cut are
// sealed, stored and committed) and drains the pipeline.
func (r *Recorder) Close() error {
	r.mu.Lock()
	r.closed = true
	open := make([]*session, 0, len(r.sessions))
	for s := range r.sessions {
		open = append(open, s)
	}
	r.mu.Unlock()
	for _, s := range open {
		s.End(ingest.EndInterrupted, errors.New("server shutting down"))
	}
	r.ends.Wait() // every session's derived work is queued, and its end after it
	if r.derived != nil {
		r.derived.Close()
	}
	r.src.Close()
	err := r.run.Wait()
	r.cancel()
	return err
}

// AlertStorageDegraded is raised, once per incident, the first time one
// of its chunks could not be written at the first attempt.
const AlertStorageDegraded = "storage.degraded"

// storageFailed alerts the backoffice that the chunk store refused a
// write of key's incident (retried, or given up and recorded as a gap).
func (r *Recorder) storageFailed(key string, err error) {
	if r.cfg.Space != nil {
		r.cfg.Space.Exhausted(err) // a disk out of space releases its reserve now, before the alert needs it
	}
	incident, _, _ := strings.Cut(key, "/")
	if _, aerr := r.cat.AlertOnce(r.ctx, AlertStorageDegraded, incident, r.cfg.Now(), map[string]any{"object": key, "error": err.Error()}); aerr != nil {
		r.log.Error("storage.degraded alert", "incident", incident, "err", aerr)
	}
}

// gatedAnchors is the anchor store behind the chunk writers' gate.
type gatedAnchors struct {
	commit.AnchorStore
	gate func() error
}

func (g gatedAnchors) Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error {
	if err := g.gate(); err != nil {
		return fmt.Errorf("anchor %s: %w", key, err)
	}
	return g.AnchorStore.Put(ctx, key, data, retainUntil)
}

// durable observes the latency metrics of a chunk just committed.
func (r *Recorder) durable(it *media.Item, at time.Time) {
	if !it.First.IsZero() {
		r.latency.Observe(at.Sub(it.First).Seconds())
		r.cutDelay.Observe(at.Sub(it.Received).Seconds())
	}
}

// Admit implements ingest.Admitter: while the node is short of storage it
// takes no new incidents, but a camera continuing its incident (a
// reconnect within the grace window) is a live one and is taken.
func (r *Recorder) Admit(ctx context.Context, cam camera.Camera) error {
	// Another node records the camera: the camera is told which, and
	// retries (behind a load balancer, possibly here again once that
	// node's lease has expired).
	if err := r.cat.LeaseHolder(ctx, cam.ID, r.cfg.Now()); err != nil {
		return err
	}
	if r.cfg.Space == nil {
		return nil
	}
	refused := r.cfg.Space.Accepting()
	if refused == nil {
		return nil
	}
	if ok, err := r.cat.Resumable(ctx, cam.ID, r.cfg.Now(), r.cfg.Grace); err != nil {
		return errors.Join(refused, err)
	} else if ok {
		return nil
	}
	return refused
}

// StartSession implements ingest.Recorder: called at the first keyframe.
func (r *Recorder) StartSession(ctx context.Context, cam camera.Camera, tracks []media.Track, remote string) (ingest.Session, error) {
	keyframe := time.Now() // StartSession runs at the first keyframe, on its packet's goroutine
	// Admitted before its stream began; the disk may have filled since.
	if err := r.Admit(ctx, cam); err != nil {
		return nil, err
	}
	key, err := chunk.NewSessionKey(r.recipients)
	if err != nil {
		return nil, err
	}
	now := r.cfg.Now()
	s := &session{r: r, id: catalog.NewID("ses-", now), cam: cam, key: key, tracks: append([]media.Track(nil), tracks...), wallStart: now}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("recorder is shutting down")
	}
	r.sessions[s] = struct{}{}
	r.mu.Unlock()
	started, err := r.cat.StartSession(ctx, catalog.SessionStart{Camera: cam.ID, Officer: cam.Officer, Session: s.id,
		WrappedKey: key.Wrapped(), Now: now, Grace: r.cfg.Grace, Lease: r.cfg.Lease})
	if err != nil {
		r.forget(s)
		return nil, err
	}
	s.incident = started.Incident
	r.startRenewing(s)
	if !started.Resumed {
		r.startAlert.Observe(time.Since(keyframe).Seconds())
	}
	r.log.Info("recording", "camera", cam.ID, "incident", s.incident, "session", s.id, "resumed", started.Resumed, "remote", remote)
	return s, nil
}

// startRenewing renews s's lease every third of its length until the
// session's end is committed (stopRenewing) or the recorder closes. A
// renewal that fails because the lease is lost ends the session; one that
// fails otherwise (the catalog briefly unreachable) is retried at the next
// tick, the lease's length leaving room for two.
func (r *Recorder) startRenewing(s *session) {
	ctx, cancel := context.WithCancel(r.ctx)
	r.mu.Lock()
	r.renewing[s.id] = cancel
	r.mu.Unlock()
	go func() {
		t := time.NewTicker(r.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := r.cat.RenewLease(ctx, s.cam.ID, s.id, r.cfg.Now(), r.cfg.Lease)
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, catalog.ErrLeaseLost):
				r.log.Error("camera's lease lost: ending the session, which may write no more", "camera", s.cam.ID, "session", s.id, "err", err)
				s.lost.Store(&err)
				return
			default:
				r.log.Warn("renew camera's lease", "camera", s.cam.ID, "session", s.id, "err", err)
			}
		}
	}()
}

func (r *Recorder) stopRenewing(session string) {
	r.mu.Lock()
	cancel := r.renewing[session]
	delete(r.renewing, session)
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (r *Recorder) forget(s *session) {
	r.mu.Lock()
	delete(r.sessions, s)
	r.mu.Unlock()
}

// session is one ingest session being recorded.
type session struct {
	r         *Recorder
	id        string
	incident  string
	cam       camera.Camera
	key       *chunk.SessionKey
	tracks    []media.Track
	wallStart time.Time
	// lost is set when the session's lease could not be renewed because
	// another node holds it: the next access unit ends the session.
	lost atomic.Pointer[error]

	mu       sync.Mutex
	seg      *segment.Segmenter
	webm     *codec.WebMWriter // the segmenter's container for VP8 sessions; holds FFmpeg memory until End
	segFirst time.Time         // arrival of the first access unit of the segment being cut
	ended    bool
	// origin is the first written access unit (the first video keyframe,
	// where the segmenter puts the session's time 0), so that ingest
	// timestamps can be placed on the manifest's timeline.
	origin     time.Duration
	haveOrigin bool
	nextSeq    uint64             // the seq of the chunk being cut
	d          *transcode.Session // nil: no derived work for this session
	// dropped are the gap records of segments (and losses) the pipeline
	// had no room for, in order, queued before anything else of the
	// session once it has: one small record per segment, so an outage
	// costs about 200 bytes a segment here, never the segment's bytes.
	dropped []*media.Item
}

// WriteAccessUnit implements ingest.Session.
func (s *session) WriteAccessUnit(au *media.AccessUnit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errors.New("session ended")
	}
	if err := s.lost.Load(); err != nil {
		return *err // the ingest side ends the session
	}
	if s.seg == nil {
		if !s.paramsKnown(au) {
			return nil // an IDR without SPS/PPS in the SDP or in-band is undecodable
		}
		cfg := segment.Config{Target: s.r.cfg.SegmentTarget}
		if container.FormatFor(s.tracks) == container.FormatWebM {
			w, err := codec.NewWebMWriter(s.tracks)
			if err != nil {
				return fmt.Errorf("webm writer: %w", err)
			}
			s.webm, cfg.Container = w, w
		}
		seg, err := segment.New(s.tracks, cfg)
		if err != nil {
			s.closeWebM()
			return fmt.Errorf("segmenter: %w", err)
		}
		init, err := seg.Init()
		if err != nil {
			return fmt.Errorf("init segment: %w", err)
		}
		s.seg = seg
		s.d = s.r.newDerived(s, init)
		if err := s.submit(&media.Item{Plain: init}, 0, 0, 0); err != nil {
			return err
		}
	}
	if !s.haveOrigin {
		s.origin, s.haveOrigin = s.ticksToDuration(au.Track, au.DTS), true
	}
	if s.segFirst.IsZero() {
		s.segFirst = au.Received
	}
	seg, err := s.seg.Push(au)
	if seg != nil {
		if err := s.submitSegment(seg); err != nil {
			return err
		}
		s.segFirst = au.Received // au opens the next segment
	}
	return err
}

// paramsKnown fills missing H.264 parameter sets from in-band NAL units,
// and a VP8 track's picture size from its first keyframe (VP8 announces
// nothing out of band), and reports whether every video track has them.
func (s *session) paramsKnown(au *media.AccessUnit) bool {
	if t := &s.tracks[au.Track]; t.Codec == media.CodecVP8 && (t.Width == 0 || t.Height == 0) && len(au.NALUs) == 1 {
		if w, h, ok := webm.VP8KeyframeSize(au.NALUs[0]); ok {
			t.Width, t.Height = w, h
		}
	}
	if t := &s.tracks[au.Track]; t.Codec == media.CodecH264 && (len(t.SPS) == 0 || len(t.PPS) == 0) {
		for _, n := range au.NALUs {
			if len(n) == 0 {
				continue
			}
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				t.SPS = append([]byte(nil), n...)
			case h264.NALUTypePPS:
				t.PPS = append([]byte(nil), n...)
			}
		}
	}
	for _, t := range s.tracks {
		if t.Codec == media.CodecH264 && (len(t.SPS) == 0 || len(t.PPS) == 0) {
			return false
		}
		if t.Codec == media.CodecVP8 && (t.Width == 0 || t.Height == 0) {
			return false
		}
	}
	return true
}

func (s *session) closeWebM() {
	if s.webm != nil {
		s.webm.Close()
		s.webm = nil
	}
}

func (s *session) submitSegment(seg *segment.Segment) error {
	it := &media.Item{Plain: seg.Data, First: s.segFirst, Received: seg.Received, Samples: seg.Samples, VideoSamples: seg.VideoSamples}
	s.nextSeq = seg.Seq + 1
	if s.d != nil && seg.Seq >= 1 {
		// Offered before the original is queued (once queued, its buffer
		// may be sealed and pooled at any moment): the stage copies it
		// only for the renditions it takes, and is handed the jobs after,
		// so the derived items, and the gaps of shed ones, follow the chunk.
		queue := s.d.Segment(s.header(seg.Seq, int64(seg.Start), int64(seg.End)), seg.Data)
		defer queue()
	}
	return s.submit(it, seg.Seq, int64(seg.Start), int64(seg.End))
}

// Lost implements ingest.Session: media that never arrived whole becomes a
// gap record, in order with the chunks around it.
func (s *session) Lost(track int, fromPTS, toPTS int64, note string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || !s.haveOrigin || track < 0 || track >= len(s.tracks) {
		return
	}
	from := max(s.ticksToDuration(track, fromPTS)-s.origin, 0)
	to := max(s.ticksToDuration(track, toPTS)-s.origin, from)
	seq := max(s.nextSeq, 1)
	if err := s.submit(&media.Item{Kind: media.ItemGap, Note: note}, seq, int64(from), int64(to)); err != nil {
		s.r.log.Error("queue gap record", "incident", s.incident, "err", err)
	}
}

func (s *session) ticksToDuration(track int, ticks int64) time.Duration {
	rate := int64(s.tracks[track].ClockRate)
	if rate <= 0 {
		return 0
	}
	return time.Duration(ticks/rate)*time.Second + time.Duration(ticks%rate)*time.Second/time.Duration(rate)
}

// submit queues it. Anything but the init segment (seq 0, which every
// later chunk needs to decode) waits at most SubmitWait for room in the
// pipeline; a segment that gets none is dropped and becomes a gap record,
// which is queued, with every one before it, as soon as there is room.
func (s *session) submit(it *media.Item, seq uint64, startNS, endNS int64) error {
	it.Header = s.header(seq, startNS, endNS)
	if it.Kind == media.ItemSegment && seq == 0 {
		if err := s.flushDropped(false); err != nil {
			return err
		}
		if err := s.enqueue(it); err != nil {
			return fmt.Errorf("queue segment %d: %w", seq, err)
		}
		return nil
	}
	err := s.flushDropped(true)
	if err == nil {
		err = s.enqueueWithin(it)
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		s.drop(it)
		return nil
	case err != nil:
		return fmt.Errorf("queue segment %d: %w", seq, err)
	}
	return nil
}

// drop turns it into a gap record waiting for room in the pipeline.
func (s *session) drop(it *media.Item) {
	if it.Kind == media.ItemSegment {
		s.r.dropped.Inc()
		s.r.log.Warn("segment dropped: the pipeline had no room for it", "incident", s.incident, "session", s.id,
			"seq", it.Header.Seq, "wait", s.r.cfg.SubmitWait)
		it = &media.Item{Kind: media.ItemGap, Header: it.Header,
			Note: fmt.Sprintf("segment not stored: no room in the pipeline for %v (store or catalog backlog)", s.r.cfg.SubmitWait)}
	}
	s.dropped = append(s.dropped, it)
}

// flushDropped queues the waiting gap records, each within SubmitWait
// when bounded (a DeadlineExceeded error leaves the rest waiting), else
// blocking.
func (s *session) flushDropped(bounded bool) error {
	for len(s.dropped) > 0 {
		var err error
		if bounded {
			err = s.enqueueWithin(s.dropped[0])
		} else {
			err = s.enqueue(s.dropped[0])
		}
		if err != nil {
			return err
		}
		s.dropped[0] = nil
		s.dropped = s.dropped[1:]
	}
	s.dropped = nil
	return nil
}

// enqueueWithin is enqueue waiting at most SubmitWait for room.
func (s *session) enqueueWithin(it *media.Item) error {
	ctx, cancel := context.WithTimeout(s.r.ctx, s.r.cfg.SubmitWait)
	defer cancel()
	return s.enqueueCtx(ctx, it)
}

// enqueue hands it to the pipeline under the session's key, with the
// session's data key for the seal stage when it is a segment.
func (s *session) enqueue(it *media.Item) error { return s.enqueueCtx(s.r.ctx, it) }

func (s *session) enqueueCtx(ctx context.Context, it *media.Item) error {
	if it.Kind == media.ItemSegment {
		it.Key = s.key
	}
	return s.r.src.Submit(ctx, s.id, it)
}

// header is the original track's chunk header for seq.
func (s *session) header(seq uint64, startNS, endNS int64) chunk.Header {
	wall := s.wallStart.Add(time.Duration(startNS))
	return chunk.Header{
		Incident: s.incident, Session: s.id, Track: chunk.TrackOriginal, Seq: seq,
		StartNS: startNS, EndNS: endNS, Wall: wall.UTC(), RetainUntil: wall.Add(s.r.cfg.Retention).UTC(),
		Codec: s.codecs(),
	}
}

// codecs names the container and the codecs, e.g. fmp4:h264+aac or
// webm:vp8+opus.
func (s *session) codecs() string {
	c := container.FormatFor(s.tracks)
	for i, t := range s.tracks {
		sep := "+"
		if i == 0 {
			sep = ":"
		}
		c += sep + string(t.Codec)
	}
	return c
}

// End implements ingest.Session: the pending segment is cut and queued,
// then the end marker, so the commit stage records the end after the last
// chunk.
func (s *session) End(how string, cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	defer s.r.forget(s)
	if s.d != nil {
		// Derived work still waiting for a worker is shed now (gap
		// records) rather than holding up the session's end; the final
		// segment's, queued below, is kept: it is often the moment that
		// matters, and the end waits only for it and the jobs running.
		s.d.Cancel()
	}
	if s.seg != nil {
		seg, err := s.seg.Flush()
		if seg != nil {
			if err := s.submitSegment(seg); err != nil {
				s.r.log.Error("final segment lost", "incident", s.incident, "err", err)
			}
		}
		if err != nil {
			s.r.log.Warn("segmenter at end", "incident", s.incident, "err", err)
		}
		if n := s.seg.Dropped(); n > 0 {
			s.r.log.Warn("access units dropped", "incident", s.incident, "session", s.id, "count", n)
		}
	}
	s.closeWebM() // after the flush: the last segment is already out of it
	if err := s.flushDropped(false); err != nil {
		s.r.log.Error("queue gap records of dropped segments", "incident", s.incident, "err", err)
	}
	note := "teardown"
	if cause != nil {
		note = cause.Error()
	}
	s.r.endAfterDerived(s, &media.Item{Kind: media.ItemEnd, Header: s.header(0, 0, 0), EndStatus: how, Note: note})
}
