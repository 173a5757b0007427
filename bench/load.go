// Package bench is camvault's load harness: N simulated bodycams publish a
// real 4 Mbit/s H.264 stream over RTSP on loopback to a real `camvault
// serve` process, and the harness reports how many streams were kept with
// zero loss, the server's CPU and memory per stream (read from /proc for
// the server process alone, not the generator), and ingest-to-durable
// latency from the server's own histogram.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"camvault/codec"
	"camvault/datadir"
)

// Clip is a pre-packetized H.264 stream that every simulated camera loops.
type Clip struct {
	SPS, PPS []byte
	Frames   [][]*rtp.Packet // RTP packets per access unit, timestamps relative
	NALUs    [][][]byte      // each access unit's NAL units, as packetized
	Bytes    int64           // payload bytes of one loop
	FPS      int
}

// MakeClip encodes a hard-to-compress 720p test picture at the given
// bitrate ("4M", "500k") with the FFmpeg libraries (keyframe every 2 s, no
// B-frames, like a bodycam) and packetizes it once.
func MakeClip(seconds int, bitrate string) (*Clip, error) {
	bps, err := parseBitrate(bitrate)
	if err != nil {
		return nil, err
	}
	const fps = 30
	aus, err := codec.EncodePattern(codec.PatternConfig{Width: 1280, Height: 720, FPS: fps, Frames: seconds * fps, Bitrate: bps, GOP: 2 * fps})
	if err != nil {
		return nil, fmt.Errorf("encode load clip: %w", err)
	}
	c := &Clip{FPS: fps}
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1}
	enc, err := f.CreateEncoder()
	if err != nil {
		return nil, err
	}
	for _, au := range aus {
		for _, n := range au {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				c.SPS = n
			case h264.NALUTypePPS:
				c.PPS = n
			}
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			return nil, err
		}
		for _, p := range pkts {
			c.Bytes += int64(len(p.Payload))
		}
		c.Frames = append(c.Frames, pkts)
		c.NALUs = append(c.NALUs, au)
	}
	if len(c.Frames) == 0 || c.SPS == nil {
		return nil, errors.New("load clip has no frames")
	}
	return c, nil
}

// parseBitrate reads "4M", "500k" or "250000" as bits per second.
func parseBitrate(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "M"):
		mult, s = 1_000_000, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "k"):
		mult, s = 1_000, strings.TrimSuffix(s, "k")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*float64(mult) > 100e6 {
		return 0, fmt.Errorf("bitrate %q: want e.g. 4M or 500k", s)
	}
	return int(v * float64(mult)), nil
}

// eachPacket hands write picture i's packets, stamped for their place in
// the loop: timestamps continue across loops, seq numbers the packets.
func (c *Clip) eachPacket(i int, seq *uint16, write func(*rtp.Packet) error) error {
	ts := uint32(int64(i) * 90000 / int64(c.FPS))
	for _, p := range c.Frames[i%len(c.Frames)] {
		pkt := *p // shared payload, own header
		pkt.Timestamp = ts
		pkt.SequenceNumber = *seq
		*seq++
		if err := write(&pkt); err != nil {
			return err
		}
	}
	return nil
}

// payloadBytes is the RTP payload of the clip's first n pictures, looped.
func (c *Clip) payloadBytes(n int64) int64 {
	loops, rest := n/int64(len(c.Frames)), int(n%int64(len(c.Frames)))
	total := loops * c.Bytes
	for _, f := range c.Frames[:rest] {
		for _, p := range f {
			total += int64(len(p.Payload))
		}
	}
	return total
}

// dirBytes is the size of every regular file under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}

// Bitrate is the clip's payload bitrate in bit/s.
func (c *Clip) Bitrate() float64 {
	return float64(c.Bytes*8) / (float64(len(c.Frames)) / float64(c.FPS))
}

// publish streams the clip in a loop for d, in real time, and returns the
// number of access units sent. A write error ends it early.
func (c *Clip) publish(ctx context.Context, url string, d time.Duration) (int64, error) {
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.SPS, PPS: c.PPS}
	medi := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{f}}
	tcp := gortsplib.TransportTCP
	cl := &gortsplib.Client{Transport: &tcp}
	if err := cl.StartRecording(url, &description.Session{Medias: []*description.Media{medi}}); err != nil {
		return 0, err
	}
	defer cl.Close()
	var sent int64
	var seq uint16
	start := time.Now()
	frame := time.Second / time.Duration(c.FPS)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * frame)
		if at.Sub(start) >= d {
			// Let the client's write queue drain before TEARDOWN.
			time.Sleep(500 * time.Millisecond)
			return sent, nil
		}
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case <-time.After(time.Until(at)):
		}
		if err := c.eachPacket(i, &seq, func(pkt *rtp.Packet) error { return cl.WritePacketRTP(medi, pkt) }); err != nil {
			return sent, err
		}
		sent++
	}
}

// LoadConfig is one load run.
type LoadConfig struct {
	Binary   string        // camvault binary
	Cameras  int           // concurrent streams
	Duration time.Duration // how long each camera streams
	Clip     *Clip
	WorkDir  string
	// ServerArgs are appended to `camvault serve` (e.g. --pprof 127.0.0.1:6060).
	ServerArgs []string
	// Env is added to the server's environment (e.g. GOMEMLIMIT).
	Env []string
	// GortsplibClient publishes with gortsplib's client instead of the
	// lean generator (more CPU on the generator's side).
	GortsplibClient bool
	// Protocol is "rtsp" (the default) or "whip": pion WebRTC cameras.
	Protocol string
	// Defaults runs serve with its own defaults for derived renditions
	// (transcode on) instead of originals only (--transcode-workers 0).
	Defaults bool
}

// LoadResult is what a run measured.
type LoadResult struct {
	Cameras        int
	ZeroLoss       int     // streams whose every access unit became durable
	Sent, Durable  int64   // access units
	ServerCores    float64 // server CPU during the run, in cores
	CoresPerStream float64
	RSSBaseMiB     float64 // server RSS before the cameras connected
	RSSPeakMiB     float64
	MiBPerStream   float64 // (peak − base) / cameras
	// RSSFirstHalfMiB and RSSSecondHalfMiB are the server's peak RSS in
	// each half of the run: equal when memory is flat (a soak), growing
	// when something leaks.
	RSSFirstHalfMiB, RSSSecondHalfMiB float64
	HeapInuseMiB                      float64 // Go heap in use at the end of streaming
	// P50, P95 and P99 are ingest-to-durable latency in steady state:
	// from when every camera has started and cut its first segment to
	// when the first one stops (the whole run when that is too short).
	// P99Run is over the whole run, the start and the simultaneous stop of
	// every camera included.
	P50, P95, P99 time.Duration
	P99Run        time.Duration
	// CutP99 is the server's own share of P99: from a segment's last frame
	// reaching the server to its chunk being durable (seal, store,
	// commit), without the segment's length or the cameras' send jitter.
	CutP99   time.Duration
	AlertP99 time.Duration // first keyframe → incident.started in the outbox
	// SentBytes is the video payload the cameras sent; StoredBytes what
	// the chunk store holds for it (container, encryption, headers and
	// any deadline sidecars): their ratio is the storage overhead.
	SentBytes, StoredBytes int64
	Errors                 []string
}

// StorageOverhead is bytes on disk per byte received.
func (r *LoadResult) StorageOverhead() float64 {
	if r.SentBytes == 0 {
		return 0
	}
	return float64(r.StoredBytes) / float64(r.SentBytes)
}

// RunLoad starts a fresh server, runs the cameras and measures.
func RunLoad(ctx context.Context, cfg LoadConfig) (*LoadResult, error) {
	data := filepath.Join(cfg.WorkDir, fmt.Sprintf("data-%d", cfg.Cameras))
	if out, err := exec.Command(cfg.Binary, "keygen", "--data", data).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("keygen: %v: %s", err, out)
	}
	secrets := make([]string, cfg.Cameras)
	for i := range secrets {
		out, err := exec.Command(cfg.Binary, "camera", "add", fmt.Sprintf("load%d", i), "--officer", "load", "--data", data).Output()
		if err != nil {
			return nil, fmt.Errorf("camera add: %w", err)
		}
		secrets[i] = strings.TrimSpace(string(out))
	}
	rtspPort, httpPort, whipPort, icePort := freePort(), freePort(), freePort(), freePort()
	// The histograms are scraped from the metrics listener, which needs no
	// credential (the backoffice listener's /metrics does).
	metricsPort := freePort()
	srv := exec.Command(cfg.Binary, "serve", "--data", data, "--no-demo", "--rtsp-rtp", "", "--rtsp-rtcp", "",
		"--rtsp", fmt.Sprintf("127.0.0.1:%d", rtspPort), "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--log-level", "warn",
		"--metrics", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--whip", fmt.Sprintf("127.0.0.1:%d", whipPort), "--ice-udp", fmt.Sprintf("127.0.0.1:%d", icePort))
	if !cfg.Defaults {
		// Originals only: what ingest → seal → store sustains (transcoding
		// has its own benchmark, and sheds under load by design).
		srv.Args = append(srv.Args, "--transcode-workers", "0")
	}
	srv.Args = append(srv.Args, cfg.ServerArgs...)
	srv.Env = append(os.Environ(), cfg.Env...)
	logs, kill, err := startReady(srv)
	if err != nil {
		return nil, err
	}
	defer kill()
	pid := srv.Process.Pid
	res := &LoadResult{Cameras: cfg.Cameras}
	res.RSSBaseMiB = rssMiB(pid)
	cpu0, t0 := cpuSeconds(pid), time.Now()

	rss := sampleRSS(pid, t0.Add(cfg.Duration/2))
	// Scrape the latency histogram when every camera is streaming and
	// again when the first stops: their difference is the steady state.
	type scrape struct {
		h   histogram
		err error
	}
	steady := make(chan [2]scrape, 1)
	steadyFrom := 2*time.Second + 3*time.Second // every start (spread over 2 s), then a segment
	go func() {
		var out [2]scrape
		defer func() { steady <- out }()
		if cfg.Duration <= steadyFrom+5*time.Second {
			return
		}
		time.Sleep(time.Until(t0.Add(steadyFrom)))
		out[0].h, out[0].err = scrapeHistogram(metricsPort, "camvault_ingest_to_durable_seconds")
		time.Sleep(time.Until(t0.Add(cfg.Duration)))
		out[1].h, out[1].err = scrapeHistogram(metricsPort, "camvault_ingest_to_durable_seconds")
	}()
	sent := make([]int64, cfg.Cameras)
	errs := make([]error, cfg.Cameras)
	var wg sync.WaitGroup
	for i := 0; i < cfg.Cameras; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Cameras switch on at unrelated moments: spread their starts,
			// and so their keyframes, over one GOP (2 s) rather than
			// having all of them cut a segment in the same instant.
			time.Sleep(time.Duration(i) * 2 * time.Second / time.Duration(cfg.Cameras))
			if cfg.Protocol == "whip" {
				r, err := cfg.Clip.PublishWHIP(ctx, WHIPOptions{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/whip/load%d", whipPort, i),
					Token: secrets[i], Duration: cfg.Duration, Teardown: true})
				sent[i], errs[i] = r.Frames, err
				return
			}
			if cfg.GortsplibClient {
				url := fmt.Sprintf("rtsp://load%d:%s@127.0.0.1:%d/load%d", i, secrets[i], rtspPort, i)
				sent[i], errs[i] = cfg.Clip.publish(ctx, url, cfg.Duration)
				return
			}
			sent[i], errs[i] = cfg.Clip.publishRaw(ctx, fmt.Sprintf("127.0.0.1:%d", rtspPort), fmt.Sprintf("load%d", i), secrets[i], cfg.Duration, 0, false)
		}(i)
	}
	wg.Wait()
	cpu1, t1 := cpuSeconds(pid), time.Now()
	res.RSSPeakMiB, res.RSSFirstHalfMiB, res.RSSSecondHalfMiB = rss.finish()
	res.ServerCores = (cpu1 - cpu0) / t1.Sub(t0).Seconds()
	res.CoresPerStream = res.ServerCores / float64(cfg.Cameras)
	res.MiBPerStream = (res.RSSPeakMiB - res.RSSBaseMiB) / float64(cfg.Cameras)

	if v, err := scrapeGauge(metricsPort, "go_memstats_heap_inuse_bytes"); err == nil {
		res.HeapInuseMiB = v / (1 << 20)
	}
	if qs, err := latencyQuantiles(metricsPort, "camvault_incident_started_alert_seconds", 0.99); err == nil {
		res.AlertP99 = qs[0]
	} else {
		res.Errors = append(res.Errors, "alert latency: "+err.Error())
	}
	if qs, err := latencyQuantiles(metricsPort, "camvault_ingest_to_durable_seconds", 0.5, 0.95, 0.99); err == nil {
		res.P50, res.P95, res.P99 = qs[0], qs[1], qs[2]
		res.P99Run = qs[2]
	} else {
		res.Errors = append(res.Errors, "latency: "+err.Error())
	}
	if w := <-steady; w[0].h != nil && w[1].h != nil {
		if qs, err := w[1].h.since(w[0].h).quantiles(0.5, 0.95, 0.99); err == nil {
			res.P50, res.P95, res.P99 = qs[0], qs[1], qs[2]
		} else {
			res.Errors = append(res.Errors, "steady-state latency: "+err.Error())
		}
	} else if w[0].err != nil || w[1].err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("steady-state latency: %v %v", w[0].err, w[1].err))
	}
	if qs, err := latencyQuantiles(metricsPort, "camvault_cut_to_durable_seconds", 0.99); err == nil {
		res.CutP99 = qs[0]
	} else {
		res.Errors = append(res.Errors, "cut latency: "+err.Error())
	}
	// Graceful stop: every segment cut is committed; then count what is durable.
	srv.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		return nil, errors.New("server did not drain within 60 s")
	}
	durable, err := durableSamples(cfg.Binary, data)
	if err != nil {
		return nil, err
	}
	if res.StoredBytes, err = dirBytes(datadir.New(data).Chunks()); err != nil {
		return nil, err
	}
	res.tally(cfg.Clip, sent, errs, durable, "durable", logs.String())
	return res, nil
}
