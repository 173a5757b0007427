package bench

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"

	"camvault/codec"
	"camvault/format/chunk"
	"camvault/storage/fs"
)

// Ratio compares a stage with the machine's raw cost of the same work,
// measured in the same run, so that a noisy machine moves both sides.
type Ratio struct {
	Name string `json:"name"`
	What string `json:"what"`
	// OursMBs and RawMBs are throughputs in Unit (MB/s when empty): each
	// side's median over the pairs of the deciding measurement.
	OursMBs float64 `json:"ours_mb_s"`
	RawMBs  float64 `json:"raw_mb_s"`
	// OursPerCPU and RawPerCPU are the same work per CPU-second (user and
	// system time): beside wall time, they show whether a side waited
	// (fsync) or computed.
	OursPerCPU float64 `json:"ours_per_cpu_s"`
	RawPerCPU  float64 `json:"raw_per_cpu_s"`
	Unit       string  `json:"unit,omitempty"`
	// Ratio is the median of the pairs' ratios (ours over raw, each pair
	// measured back to back) of the deciding measurement: the first one
	// at or above the floor, or the last.
	Ratio float64 `json:"ratio"`
	// Spread is those pairs' ratios: min, median, max.
	Spread Spread `json:"spread"`
	// CPURatio is the median of the same pairs' ratios of work per
	// CPU-second: shown, not checked (a side that waits on fsync spends
	// little CPU), but steadier than wall time on a loaded machine.
	CPURatio float64 `json:"cpu_ratio"`
	Pairs    int     `json:"pairs"`
	Attempts int     `json:"attempts"` // measurements made: 1 + re-measurements below the floor
	Floor    float64 `json:"floor"`
	AboveMin bool    `json:"ok"`
}

// Spread summarises a measurement's pair ratios.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// Rounds says how every ratio is measured.
type Rounds struct {
	// Pairs is the number of alternating (ours, raw) pairs in one
	// measurement; at least MinPairs.
	Pairs int
	// Retries is how often a ratio whose median is below its floor is
	// measured again, afresh, before it fails: a burst of load from the
	// rest of the machine lasts seconds, a regression stays.
	Retries int
}

// MinPairs is the fewest pairs a median is taken over.
const MinPairs = 5

// DefaultRounds is what `camvault bench` uses unless told otherwise.
var DefaultRounds = Rounds{Pairs: 7, Retries: 2}

// sample is one run of one side: work per wall second and per CPU-second.
type sample struct{ wall, perCPU float64 }

// side runs one side of a comparison once.
type side func() (sample, error)

// measure fills r's figures from rounds of alternating pairs against
// floor (0: none). Each pair runs ours then raw back to back, so both see
// the same machine, and its ratio is what counts; the median of the
// pairs' ratios ignores the pairs a burst of other work disturbed on one
// side. Below the floor, the whole measurement is made again, up to
// rs.Retries times; the first at or above the floor decides.
func (rs Rounds) measure(r Ratio, floor float64, ours, raw side) (Ratio, error) {
	pairs := max(rs.Pairs, MinPairs)
	r.Floor, r.Pairs = floor, pairs
	for attempt := 1; attempt <= 1+max(rs.Retries, 0); attempt++ {
		var ratios, cpuRatios, ow, rw, oc, rc []float64
		for range pairs {
			o, err := ours()
			if err != nil {
				return r, fmt.Errorf("%s: %w", r.Name, err)
			}
			w, err := raw()
			if err != nil {
				return r, fmt.Errorf("%s raw: %w", r.Name, err)
			}
			if o.wall <= 0 || w.wall <= 0 {
				return r, fmt.Errorf("%s: a side measured no throughput (%v, %v)", r.Name, o.wall, w.wall)
			}
			ratios = append(ratios, o.wall/w.wall)
			if w.perCPU > 0 {
				cpuRatios = append(cpuRatios, o.perCPU/w.perCPU)
			}
			ow, rw, oc, rc = append(ow, o.wall), append(rw, w.wall), append(oc, o.perCPU), append(rc, w.perCPU)
		}
		r.Attempts = attempt
		r.Spread = spread(ratios)
		r.Ratio, r.CPURatio = r.Spread.Median, median(cpuRatios)
		r.OursMBs, r.RawMBs, r.OursPerCPU, r.RawPerCPU = median(ow), median(rw), median(oc), median(rc)
		r.AboveMin = floor <= 0 || r.Ratio >= floor
		if r.AboveMin {
			break
		}
	}
	return r, nil
}

// spread of v (not empty).
func spread(v []float64) Spread {
	return Spread{Min: slices.Min(v), Median: median(v), Max: slices.Max(v)}
}

// median of v (0 when empty), which it leaves as it was.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	switch n := len(s); {
	case n == 0:
		return 0
	case n%2 == 0:
		return (s[n/2-1] + s[n/2]) / 2
	default:
		return s[n/2]
	}
}

//go:embed floors.json
var floorsJSON []byte

// Floors are the ratios below which CI fails, kept in bench/floors.json.
func Floors() (map[string]float64, error) {
	var f map[string]float64
	if err := json.Unmarshal(floorsJSON, &f); err != nil {
		return nil, fmt.Errorf("bench/floors.json: %w", err)
	}
	return f, nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sideRun is the wall time each side of a throughput pair runs for: short,
// so that many pairs fit in the run and each pair's two sides see the
// same machine.
const sideRun = 150 * time.Millisecond

// throughput runs op (processing size bytes) for at least d, and at least
// 3 times, as one side's sample in MB.
func throughput(size int, d time.Duration, op func() error) side {
	return func() (sample, error) {
		n := 0
		start, cpu0 := time.Now(), cpuTime()
		for time.Since(start) < d || n < 3 {
			if err := op(); err != nil {
				return sample{}, err
			}
			n++
		}
		mb := float64(size*n) / 1e6
		return sample{mb / time.Since(start).Seconds(), mb / max(cpuTime()-cpu0, time.Microsecond).Seconds()}, nil
	}
}

// MeasureSeal: the seal stage on 1 MB segments against SHA-256 twice and
// AES-256-GCM on the same buffers, one core.
func MeasureSeal(rs Rounds, floor float64) (Ratio, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return Ratio{}, err
	}
	key, err := chunk.NewSessionKey([]age.Recipient{id.Recipient()})
	if err != nil {
		return Ratio{}, err
	}
	pt := make([]byte, 1<<20)
	rand.Read(pt)
	var seq uint64
	h := chunk.Header{Incident: "inc", Session: "ses", Track: chunk.TrackOriginal, Wall: time.Now(), RetainUntil: time.Now(), Codec: "fmp4:h264"}
	block, _ := aes.NewCipher(make([]byte, 32))
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	out := make([]byte, 0, len(pt)+16)
	return rs.measure(Ratio{Name: "seal", What: "seal 1 MB segment vs SHA-256×2 + AES-256-GCM"}, floor,
		throughput(len(pt), sideRun, func() error {
			seq++
			h.Seq = seq
			c, err := key.Seal(h, pt)
			if err != nil {
				return err
			}
			c.Release()
			return nil
		}),
		throughput(len(pt), sideRun, func() error {
			sha256.Sum256(pt)
			out = gcm.Seal(out[:0], nonce, pt, nonce)
			sha256.Sum256(out)
			return nil
		}))
}

// MeasureStore: the fs store's Put of 1 MB chunks against the bare
// durable write of the same bytes (create, write, fsync, rename, fsync dir).
func MeasureStore(dir string, rs Rounds, floor float64) (Ratio, error) {
	st, err := fs.Open(filepath.Join(dir, "store"))
	if err != nil {
		return Ratio{}, err
	}
	defer st.Close()
	rawDir := filepath.Join(dir, "raw")
	if err := os.MkdirAll(rawDir, 0o700); err != nil {
		return Ratio{}, err
	}
	d, err := os.Open(rawDir)
	if err != nil {
		return Ratio{}, err
	}
	defer d.Close()
	data := bytes.Repeat([]byte{0x5a}, 1<<20)
	deadline := time.Now().Add(time.Hour)
	n := 0
	ctx := context.Background()
	return rs.measure(Ratio{Name: "store_fs", What: "fs store put 1 MB vs create+write+fsync+rename+fsync dir"}, floor,
		throughput(len(data), sideRun, func() error {
			n++
			return st.Put(ctx, chunk.ObjectKey(chunk.Header{Incident: "inc", Session: "ses", Track: chunk.TrackOriginal, Seq: uint64(n)}), data, deadline)
		}),
		throughput(len(data), sideRun, func() error {
			n++
			tmp := filepath.Join(rawDir, fmt.Sprintf(".tmp-%d", n))
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			f.Close()
			if err := os.Rename(tmp, filepath.Join(rawDir, fmt.Sprint(n))); err != nil {
				return err
			}
			return d.Sync()
		}))
}

// proxyClipSeconds is the length of the proxy benchmark's clip: one 4 s
// fragment, so that each side's per-run set-up (opening the input, the
// encoder's) weighs as it does on a camera's few-second segments.
const proxyClipSeconds = 4

// MeasureProxy: codec's ProxyRenderer making the 360p review proxy of a
// 720p H.264 fragment against the ffmpeg CLI doing the same transcode
// with the same settings (bicubic scale to 640x360, libx264 veryfast,
// 600 kbit/s, no B-frames, one thread each for decoding and encoding,
// no audio) on the same input, in frames/s. The CLI's time is the one
// its -benchmark reports for the transcode itself, without its process
// start-up. One thread: the per-core cost, which the machine's other
// work disturbs least.
func MeasureProxy(dir string, rs Rounds, floor float64) (Ratio, error) {
	file := filepath.Join(dir, "proxy-clip.mp4")
	frames := proxyClipSeconds * 30
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", strconv.Itoa(proxyClipSeconds),
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-g", strconv.Itoa(frames), "-bf", "0", "-pix_fmt", "yuv420p",
		"-movflags", "frag_keyframe+empty_moov+default_base_moof", file).CombinedOutput(); err != nil {
		return Ratio{}, fmt.Errorf("proxy: make clip: %v: %s", err, out)
	}
	clip, err := os.ReadFile(file)
	if err != nil {
		return Ratio{}, err
	}
	at := bytes.Index(clip, []byte("moof"))
	if at < 4 {
		return Ratio{}, errors.New("proxy: no fragment in the clip")
	}
	init, seg := clip[:at-4], clip[at-4:]
	r := codec.NewProxyRenderer(codec.ProxyConfig{Threads: 1})
	ctx := context.Background()
	// One pair is one transcode each: a whole fragment, the unit of work
	// a camera's segment is.
	return rs.measure(Ratio{Name: "proxy_720p", What: "review proxy 720p to 360p H.264 vs the ffmpeg CLI, same settings, 1 thread", Unit: "frames/s"}, floor,
		func() (sample, error) {
			start, cpu0 := time.Now(), cpuTime()
			if _, _, err := r.Proxy(ctx, init, seg); err != nil {
				return sample{}, err
			}
			return sample{float64(frames) / time.Since(start).Seconds(), float64(frames) / max(cpuTime()-cpu0, time.Microsecond).Seconds()}, nil
		},
		func() (sample, error) {
			wall, cpu, err := cliProxyTime(file)
			if err != nil {
				return sample{}, err
			}
			return sample{float64(frames) / wall.Seconds(), float64(frames) / max(cpu, time.Microsecond).Seconds()}, nil
		})
}

var cliTimes = regexp.MustCompile(`utime=([0-9.]+)s stime=([0-9.]+)s rtime=([0-9.]+)s`)

// cliProxyTime runs the ffmpeg CLI's proxy transcode and returns the wall
// and CPU (user and system) time it reports for it.
func cliProxyTime(file string) (wall, cpu time.Duration, err error) {
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-benchmark", "-threads", "1", "-i", file, "-an",
		"-filter_threads", "1", "-vf", "scale=640:360:flags=bicubic", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "600k",
		"-bf", "0", "-threads", "1", "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-y", os.DevNull).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("proxy: ffmpeg: %v: %s", err, out)
	}
	m := cliTimes.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("proxy: ffmpeg -benchmark printed no times: %s", out)
	}
	var sec [3]float64
	for i := range sec {
		if sec[i], err = strconv.ParseFloat(string(m[i+1]), 64); err != nil {
			return 0, 0, fmt.Errorf("proxy: ffmpeg time %q", m[i+1])
		}
	}
	if sec[2] <= 0 {
		return 0, 0, fmt.Errorf("proxy: ffmpeg rtime %v", sec[2])
	}
	return time.Duration(sec[2] * float64(time.Second)), time.Duration((sec[0] + sec[1]) * float64(time.Second)), nil
}
