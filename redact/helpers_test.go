package redact

import (
	"context"
	"fmt"
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/codec"
	"camvault/internal/testenv"
)

// The composed clip: pigo's sample photograph (one face, counted by hand)
// pasted twice onto a moving test pattern, so the clip shows two faces.
const (
	clipW, clipH = 1280, 720
	faceW, faceH = 240, 300
)

// faceRects are where the two photographs are pasted, in pixels.
var faceRects = []image.Rectangle{
	image.Rect(200, 200, 200+faceW, 200+faceH),
	image.Rect(800, 250, 800+faceW, 250+faceH),
}

// samplePhoto is the photograph pigo's module ships for its tests.
func samplePhoto(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/esimov/pigo").Output()
	if err != nil {
		testenv.Missing(t, "the pigo module's source (go mod download github.com/esimov/pigo)")
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "testdata", "sample.jpg")
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, p)
	}
	return p
}

// makeClip writes a test clip with the ffmpeg CLI and returns its bytes:
// an H.264/AAC fragmented MP4 or a VP8/Opus WebM, as camvault stores
// sessions. faces pastes the photograph twice; otherwise it is the test
// pattern alone.
func makeClip(t testing.TB, vp8, faces bool, seconds float64, size string) []byte {
	t.Helper()
	testenv.Require(t, "ffmpeg")
	dir := t.TempDir()
	out := filepath.Join(dir, "clip.mp4")
	args := []string{"-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=%s:rate=30:duration=%g", size, seconds)}
	filter := "[0:v]format=yuv420p[v]"
	if faces {
		args = append(args, "-loop", "1", "-framerate", "30", "-i", samplePhoto(t))
		filter = fmt.Sprintf("[1:v]scale=%d:%d,split[a][b];[0:v][a]overlay=%d:%d[t];[t][b]overlay=%d:%d:shortest=1,format=yuv420p[v]",
			faceW, faceH, faceRects[0].Min.X, faceRects[0].Min.Y, faceRects[1].Min.X, faceRects[1].Min.Y)
	}
	args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=48000:duration=%g", seconds))
	nIn := 2
	if faces {
		nIn = 3
	}
	args = append(args, "-filter_complex", filter, "-map", "[v]", "-map", fmt.Sprintf("%d:a", nIn-1), "-t", fmt.Sprint(seconds))
	if vp8 {
		out = filepath.Join(dir, "clip.webm")
		args = append(args, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "4M", "-c:a", "libopus", "-f", "webm")
	} else {
		args = append(args, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "30", "-c:a", "aac",
			"-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4")
	}
	args = append(args, "-y", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// grey is a decoded picture's luma, copied out.
type grey struct {
	at   time.Duration
	w, h int
	pix  []byte
}

func (g *grey) at2(x, y int) float64 { return float64(g.pix[y*g.w+x]) }

// pictures decodes every picture's luma.
func pictures(t testing.TB, media []byte) []grey {
	t.Helper()
	var out []grey
	err := codec.Pictures(context.Background(), media, 1, 1, func(p *codec.Picture) error {
		g := grey{at: p.At, w: p.Width, h: p.Height, pix: make([]byte, p.Width*p.Height)}
		for y := 0; y < p.Height; y++ {
			copy(g.pix[y*p.Width:(y+1)*p.Width], p.Planes[0][y*p.Strides[0]:])
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// laplacianVariance is the variance of the 4-neighbour Laplacian inside
// r: the usual measure of how much detail (focus) a region has.
func laplacianVariance(g *grey, r image.Rectangle) float64 {
	var sum, sq float64
	n := 0
	for y := max(r.Min.Y, 1); y < min(r.Max.Y, g.h-1); y++ {
		for x := max(r.Min.X, 1); x < min(r.Max.X, g.w-1); x++ {
			l := 4*g.at2(x, y) - g.at2(x-1, y) - g.at2(x+1, y) - g.at2(x, y-1) - g.at2(x, y+1)
			sum += l
			sq += l * l
			n++
		}
	}
	if n == 0 {
		return 0
	}
	m := sum / float64(n)
	return sq/float64(n) - m*m
}

// psnrOutside is the luma PSNR between a and b over the pixels outside
// every rectangle of skip.
func psnrOutside(a, b *grey, skip []image.Rectangle) float64 {
	var se float64
	n := 0
	for y := 0; y < a.h; y++ {
		for x := 0; x < a.w; x++ {
			in := false
			for _, r := range skip {
				if image.Pt(x, y).In(r) {
					in = true
					break
				}
			}
			if in {
				continue
			}
			d := a.at2(x, y) - b.at2(x, y)
			se += d * d
			n++
		}
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/(se/float64(n)))
}

// pixels is a normalised box in pixels of a w×h picture.
func pixels(b Box, w, h int) image.Rectangle {
	return image.Rect(int(b.X*float64(w)), int(b.Y*float64(h)), int(math.Ceil((b.X+b.W)*float64(w))), int(math.Ceil((b.Y+b.H)*float64(h))))
}

// audioSamples decodes a file's audio with the ffmpeg CLI, mono 48 kHz
// float, from its start.
func audioSamples(t testing.TB, path string) []float32 {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:a", "-ac", "1", "-ar", "48000", "-f", "f32le", "-").Output()
	if err != nil {
		t.Fatalf("decode audio: %v", err)
	}
	s := make([]float32, len(out)/4)
	for i := range s {
		s[i] = math.Float32frombits(uint32(out[4*i]) | uint32(out[4*i+1])<<8 | uint32(out[4*i+2])<<16 | uint32(out[4*i+3])<<24)
	}
	return s
}
