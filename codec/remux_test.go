package codec

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"camvault/internal/testenv"
)

func requireFFmpeg(t *testing.T) {
	t.Helper()
	testenv.Require(t, "ffmpeg", "ffprobe")
}

func framemd5(t *testing.T, path string) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:v", "-f", "framemd5", "-").Output()
	if err != nil {
		t.Fatalf("framemd5 %s: %v", path, err)
	}
	var lines [][]byte
	for _, l := range bytes.Split(out, []byte("\n")) {
		if len(l) > 0 && l[0] != '#' {
			lines = append(lines, l)
		}
	}
	return bytes.Join(lines, []byte("\n"))
}

func TestRemuxKeepsEveryFrame(t *testing.T) {
	requireFFmpeg(t)
	dir := t.TempDir()
	frag := filepath.Join(dir, "frag.mp4")
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
		"-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", "3", "-c:v", "libx264", "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-movflags", "frag_keyframe+empty_moov+default_base_moof", frag).CombinedOutput(); err != nil {
		t.Fatalf("make fragmented MP4: %v\n%s", err, out)
	}
	data, err := os.ReadFile(frag)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.mp4")
	if err := (Remuxer{}).Remux(context.Background(), data, out); err != nil {
		t.Fatal(err)
	}
	if a, b := framemd5(t, frag), framemd5(t, out); !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatal("remuxed video differs from the input")
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", out).Output()
	if err != nil || string(probe) != "h264\naac\n" {
		t.Fatalf("streams %q, %v", probe, err)
	}
}

func TestRemuxRejectsGarbage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.mp4")
	for _, in := range [][]byte{nil, []byte("not an mp4 at all"), bytes.Repeat([]byte{0, 0, 0, 8, 'f', 't', 'y', 'p'}, 100)} {
		if err := (Remuxer{}).Remux(context.Background(), in, out); err == nil {
			t.Fatalf("remux of %d garbage bytes succeeded", len(in))
		}
	}
}
