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
	// OursMBs and RawMBs are throughputs in Unit (MB/s when empty).
	OursMBs float64 `json:"ours_mb_s"`
	RawMBs  float64 `json:"raw_mb_s"`
	// OursPerCPU and RawPerCPU are the same work per CPU-second (user and
	// system time): beside wall time, they show whether a side waited
	// (fsync) or computed.
	OursPerCPU float64 `json:"ours_per_cpu_s"`
	RawPerCPU  float64 `json:"raw_per_cpu_s"`
	Unit       string  `json:"unit,omitempty"`
	Ratio      float64 `json:"ratio"`
	Floor      float64 `json:"floor"`
	AboveMin   bool    `json:"ok"`
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

// throughput runs op (processing size bytes) for at least d and returns
// MB/s of wall time and MB per CPU-second.
func throughput(size int, d time.Duration, op func() error) (wall, perCPU float64, err error) {
	n := 0
	start, cpu0 := time.Now(), cpuTime()
	for time.Since(start) < d || n < 5 {
		if err := op(); err != nil {
			return 0, 0, err
		}
		n++
	}
	mb := float64(size*n) / 1e6
	return mb / time.Since(start).Seconds(), mb / max(cpuTime()-cpu0, time.Microsecond).Seconds(), nil
}

// compare alternates ours and raw for rounds and keeps each side's best:
// the best run is the one least disturbed by the rest of the machine.
func compare(name, what string, size, rounds int, ours, raw func() error) (Ratio, error) {
	r := Ratio{Name: name, What: what}
	for i := 0; i < rounds; i++ {
		o, oc, err := throughput(size, 300*time.Millisecond, ours)
		if err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
		w, wc, err := throughput(size, 300*time.Millisecond, raw)
		if err != nil {
			return r, fmt.Errorf("%s raw: %w", name, err)
		}
		r.OursMBs, r.RawMBs = max(r.OursMBs, o), max(r.RawMBs, w)
		r.OursPerCPU, r.RawPerCPU = max(r.OursPerCPU, oc), max(r.RawPerCPU, wc)
	}
	r.Ratio = r.OursMBs / r.RawMBs
	return r, nil
}

// MeasureSeal: the seal stage on 1 MB segments against SHA-256 twice and
// AES-256-GCM on the same buffers, one core.
func MeasureSeal(rounds int) (Ratio, error) {
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
	return compare("seal", "seal 1 MB segment vs SHA-256×2 + AES-256-GCM", len(pt), rounds,
		func() error {
			seq++
			h.Seq = seq
			c, err := key.Seal(h, pt)
			if err != nil {
				return err
			}
			c.Release()
			return nil
		},
		func() error {
			sha256.Sum256(pt)
			out = gcm.Seal(out[:0], nonce, pt, nonce)
			sha256.Sum256(out)
			return nil
		})
}

// MeasureStore: the fs store's Put of 1 MB chunks against the bare
// durable write of the same bytes (create, write, fsync, rename, fsync dir).
func MeasureStore(dir string, rounds int) (Ratio, error) {
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
	return compare("store_fs", "fs store put 1 MB vs create+write+fsync+rename+fsync dir", len(data), rounds,
		func() error {
			n++
			return st.Put(ctx, chunk.ObjectKey(chunk.Header{Incident: "inc", Session: "ses", Track: chunk.TrackOriginal, Seq: uint64(n)}), data, deadline)
		},
		func() error {
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
		})
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
func MeasureProxy(dir string, rounds int) (Ratio, error) {
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
	res := Ratio{Name: "proxy_720p", What: "review proxy 720p to 360p H.264 vs the ffmpeg CLI, same settings, 1 thread", Unit: "frames/s"}
	// Twice the rounds of the other ratios: a transcode is one long
	// burst, which the rest of the machine disturbs more often.
	for range max(2*rounds, 1) {
		start, cpu0 := time.Now(), cpuTime()
		if _, _, err := r.Proxy(ctx, init, seg); err != nil {
			return res, fmt.Errorf("proxy: %w", err)
		}
		res.OursMBs = max(res.OursMBs, float64(frames)/time.Since(start).Seconds())
		res.OursPerCPU = max(res.OursPerCPU, float64(frames)/max(cpuTime()-cpu0, time.Microsecond).Seconds())
		wall, cpu, err := cliProxyTime(file)
		if err != nil {
			return res, err
		}
		res.RawMBs = max(res.RawMBs, float64(frames)/wall.Seconds())
		res.RawPerCPU = max(res.RawPerCPU, float64(frames)/max(cpu, time.Microsecond).Seconds())
	}
	res.Ratio = res.OursMBs / res.RawMBs
	return res, nil
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
