package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// clip is a test recording made once per run by the ffmpeg CLI: H.264
// without B-frames, a keyframe every 2 s, with AAC audio, like a bodycam.
type clip struct {
	MP4     string // H.264 + AAC in MP4
	AnnexB  string // the same video as an Annex-B elementary stream
	ADTS    string // the same audio as ADTS
	Seconds float64
	Frames  int
}

var (
	clipOnce sync.Map // seconds -> *clipResult
)

type clipResult struct {
	once sync.Once
	c    *clip
	err  error
}

func testClip(t testing.TB, seconds int) *clip {
	t.Helper()
	requireTool(t, "ffmpeg")
	v, _ := clipOnce.LoadOrStore(seconds, &clipResult{})
	r := v.(*clipResult)
	r.once.Do(func() {
		dir, err := os.MkdirTemp("", "camvault-clip")
		if err != nil {
			r.err = err
			return
		}
		c := &clip{MP4: filepath.Join(dir, "clip.mp4"), AnnexB: filepath.Join(dir, "clip.h264"), ADTS: filepath.Join(dir, "clip.aac"),
			Seconds: float64(seconds), Frames: seconds * 30}
		runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
			"-t", strconv.Itoa(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-bf", "0",
			"-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "mp4", c.MP4)
		runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", c.MP4, "-map", "0:v", "-c", "copy",
			"-bsf:v", "h264_mp4toannexb", "-f", "h264", c.AnnexB)
		runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", c.MP4, "-map", "0:a", "-c", "copy", "-f", "adts", c.ADTS)
		r.c = c
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c == nil {
		t.Fatal("test clip could not be made")
	}
	return r.c
}

// vclNALUs returns the VCL NAL units of an H.264 file (any container
// ffmpeg reads), in decoding order.
func vclNALUs(t testing.TB, path string) [][]byte {
	t.Helper()
	raw := path
	if !strings.HasSuffix(path, ".h264") {
		raw = filepath.Join(t.TempDir(), "video.h264")
		runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", path, "-map", "0:v", "-c", "copy",
			"-bsf:v", "h264_mp4toannexb", "-f", "h264", raw)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(b); err != nil {
		t.Fatalf("parse %s: %v", raw, err)
	}
	var out [][]byte
	for _, n := range nalus {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeIDR, h264.NALUTypeNonIDR:
			out = append(out, n)
		}
	}
	return out
}

// accessUnits splits an Annex-B stream into access units (one VCL NAL unit
// per picture for these clips; parameter sets travel with the IDR).
func accessUnits(t testing.TB, path string) [][][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	var aus [][][]byte
	var cur [][]byte
	for _, n := range nalus {
		typ := h264.NALUType(n[0] & 0x1f)
		if typ == h264.NALUTypeAccessUnitDelimiter {
			continue
		}
		cur = append(cur, n)
		if typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR {
			aus = append(aus, cur)
			cur = nil
		}
	}
	return aus
}

func framemd5(t testing.TB, path string) []string {
	t.Helper()
	out := runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:v", "-f", "framemd5", "-")
	var sums []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		sums = append(sums, strings.TrimSpace(f[len(f)-1]))
	}
	return sums
}

func probeDuration(t testing.TB, path string) float64 {
	t.Helper()
	out := runCmd(t, "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path)
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe duration of %s: %q", path, out)
	}
	return d
}

// assertNoPlaintext fails if any 32-byte run of the source's NAL units
// appears in any file under dir.
func assertNoPlaintext(t testing.TB, dir string, nalus [][]byte) {
	t.Helper()
	var probes [][]byte
	for i, n := range nalus {
		if len(n) < 64 {
			continue
		}
		if i%5 == 0 { // a sample of slices is plenty
			probes = append(probes, n[16:48])
		}
	}
	if len(probes) == 0 {
		t.Fatal("no probes")
	}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, pr := range probes {
			if bytes.Contains(b, pr) {
				return fmt.Errorf("plaintext video found in %s", p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
