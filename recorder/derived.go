package recorder

import (
	"runtime"

	"camvault/media"
	"camvault/stages/transcode"
)

// TranscodeConfig is the recorder's derived-work section: review proxies
// and thumbnails made from the plaintext before it is sealed.
type TranscodeConfig struct {
	Enabled bool
	// Workers transcoding threads (niced below ingest); zero or negative:
	// cores − 1, at least 1.
	Workers int
	// Queue is how many proxy jobs may wait before new ones are shed;
	// default 4 per worker (thumbnails have their own, longer queue).
	Queue int
	// QueueBytes bounds the bytes of segment copies waiting or being
	// rendered; default 16 MiB per worker.
	QueueBytes int
	// CPU is the derived work's budget in cores; work beyond it is shed
	// (gap records) before anything is copied or decoded. Zero: no
	// budget (serve's default is DefaultTranscodeCPU).
	CPU float64
	// Renderer makes the renditions; default a codec.ProxyRenderer making
	// 640×360 H.264 proxies at 600 kbit/s, one thread per job.
	Renderer transcode.Renderer
}

// DefaultTranscodeCPU is serve's CPU budget for derived work: an eighth
// of the cores (a quarter of a core on a 2-core node), so that proxies and
// thumbnails cost a bounded share beside the evidence path however many
// cameras there are.
func DefaultTranscodeCPU() float64 { return float64(runtime.NumCPU()) / 8 }

// DefaultTranscodeWorkers is the pool size when none is configured: every
// core but one, which is left to ingest.
func DefaultTranscodeWorkers() int { return max(runtime.NumCPU()-1, 1) }

// newDerived returns the session's derived work, or nil when the
// recorder makes none or the session has no video.
func (r *Recorder) newDerived(s *session, init []byte) *transcode.Session {
	if r.derived == nil {
		return nil
	}
	for _, t := range s.tracks {
		if t.IsVideo() {
			return r.derived.NewSession(s.id, init, s.header(0, 0, 0), s.enqueue, r.log)
		}
	}
	return nil
}

// endAfterDerived queues the session's end record once all its derived
// work is queued before it (session.End has shed the jobs still waiting),
// in the background so that the ingest goroutine ending the session is not
// held up by the jobs still running.
func (r *Recorder) endAfterDerived(s *session, end *media.Item) {
	d := s.d
	if d == nil {
		r.submitEnd(s, end)
		return
	}
	r.ends.Add(1)
	go func() {
		defer r.ends.Done()
		d.Wait()
		r.submitEnd(s, end)
	}()
}

func (r *Recorder) submitEnd(s *session, end *media.Item) {
	if err := s.enqueue(end); err != nil {
		r.log.Error("queue session end", "incident", s.incident, "err", err)
	}
}
