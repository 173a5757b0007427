package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// probeStdin describes a stream ffprobe reads from a pipe, as a player
// would take `camvault review`'s output.
func probeStdin(t *testing.T, data string) string {
	t.Helper()
	cmd := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", "-i", "pipe:0")
	cmd.Stdin = strings.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffprobe of the review stream: %v\n%s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// An incident published over RTSP gets review proxies at ingest; where
// none was made (transcoding off here, or shed under load) the reviewer
// gets one made on demand from the original. Either plays, every view is
// in the audit trail with its reason, and a view without a reason is
// refused.
func TestReviewProxy(t *testing.T) {
	requireTool(t, "ffprobe")
	c := testClip(t, 6)
	for _, tc := range []struct {
		workers, says string
	}{
		{"1", "stored review proxy"},
		{"0", "proxy made now from original chunk"},
	} {
		t.Run("transcode-workers="+tc.workers, func(t *testing.T) {
			data, secrets := setupData(t, "cam1")
			s := newServer(t, data, "--transcode-workers", tc.workers)
			if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
				t.Fatal(err)
			}
			inc := waitIncidentEnded(t, s, "cam1")
			if _, _, code := camvault(t, "review", inc.ID, "--seq", "1", "--identity", identityPath(data), "--by", "rita", "--data", data); code != 2 {
				t.Fatalf("a view without a reason: exit %d, want 2", code)
			}
			out, errs, code := camvault(t, "review", inc.ID, "--seq", "2", "--identity", identityPath(data),
				"--reason", "complaint 2026-114", "--by", "rita", "--data", data)
			if code != 0 || !strings.Contains(errs, tc.says) {
				t.Fatalf("review: exit %d\n%s", code, errs)
			}
			if got := probeStdin(t, out); !strings.HasPrefix(got, "h264,640,360,") || strings.HasSuffix(got, ",0") {
				t.Fatalf("review stream: %q, want H.264 640x360 with pictures", got)
			}
			var rep struct {
				Chunks  int      `json:"chunks"`
				Derived int      `json:"derived_chunks"`
				Gaps    []string `json:"gaps"`
			}
			if err := json.Unmarshal([]byte(mustCamvault(t, "verify", inc.ID, "--identity", identityPath(data), "--json", "--data", data)), &rep); err != nil {
				t.Fatal(err)
			}
			// Original init + media chunks; with transcoding, a proxy init
			// and a proxy and a thumbnail per media chunk.
			if media := rep.Chunks - rep.Derived - 1; tc.workers == "1" && (media < 3 || rep.Derived != 2*media+1 || len(rep.Gaps) != 0) ||
				tc.workers == "0" && rep.Derived != 0 {
				t.Fatalf("verify: %d chunks, %d derived, gaps %v", rep.Chunks, rep.Derived, rep.Gaps)
			}
			trail := mustCamvault(t, "audit", "--data", data)
			if n := strings.Count(trail, `"action":"footage.viewed"`); n != 1 || !strings.Contains(trail, `"reason":"complaint 2026-114"`) || !strings.Contains(trail, `"actor":"rita"`) {
				t.Fatalf("audit trail has %d views:\n%s", n, trail)
			}
		})
	}
}
