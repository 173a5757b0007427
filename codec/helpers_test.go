package codec

import (
	"bytes"
	"os/exec"
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
