package e2e

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// publishFFmpeg streams the clip in real time with the ffmpeg CLI.
func publishFFmpeg(t testing.TB, c *clip, url, transport string) error {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", c.MP4, "-c", "copy",
		"-f", "rtsp", "-rtsp_transport", transport, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("ffmpeg: %s", out)
	}
	return err
}

// checkExport exports the incident and checks the MP4 against the clip.
func checkExport(t *testing.T, s *server, inc incidentRow, c *clip) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	files := strings.Fields(mustCamvault(t, "export", inc.ID, "--identity", identityPath(s.data), "--out", out, "--data", s.data))
	if len(files) != 1 {
		t.Fatalf("export files: %v", files)
	}
	mp4 := files[0]
	if st, err := os.Stat(mp4); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("exported footage %s: mode %v, want 0600 (%v)", mp4, st.Mode().Perm(), err)
	}

	// Same VCL NAL units, in the same order, as the camera's own file.
	sent, got := vclNALUs(t, c.AnnexB), vclNALUs(t, mp4)
	if len(got) != len(sent) {
		t.Fatalf("export has %d VCL NAL units, camera sent %d", len(got), len(sent))
	}
	for i := range sent {
		if string(sent[i]) != string(got[i]) {
			t.Fatalf("VCL NAL unit %d differs", i)
		}
	}
	// Identical decoded frames.
	a, b := framemd5(t, c.MP4), framemd5(t, mp4)
	if len(a) != len(b) {
		t.Fatalf("decoded frames: export %d, source %d", len(b), len(a))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("decoded frame %d differs", i)
		}
	}
	if d := probeDuration(t, mp4); math.Abs(d-c.Seconds) > 2.0 {
		t.Fatalf("export duration %.2f s, sent %.2f s", d, c.Seconds)
	}
	// The bundle verifies offline with the identity, down to its MP4
	// carrying exactly the sealed samples.
	o, e, code := camvault(t, "verify", out, "--identity", identityPath(s.data), "--pubkey", filepath.Join(s.data, "keys", "node.pub"))
	if code != 0 || !strings.Contains(o, "incident.mp4 carries exactly the sealed samples") {
		t.Fatalf("verify export: exit %d\n%s%s", code, o, e)
	}
	return out
}

func spsOf(t testing.TB, c *clip) []byte {
	for _, au := range accessUnits(t, c.AnnexB) {
		for _, n := range au {
			if h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS {
				return n
			}
		}
	}
	t.Fatal("clip has no SPS")
	return nil
}

func TestFFmpegPublishTCP(t *testing.T) {
	c := testClip(t, 7)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Status != "closed" {
		t.Errorf("status %q after TEARDOWN, want closed", inc.Status)
	}
	// 7 s at 2 s segments: init + 4 media chunks.
	if inc.Chunks < 4 {
		t.Fatalf("only %d chunks stored\n%s", inc.Chunks, s.logs())
	}
	nalus := vclNALUs(t, c.AnnexB)
	nalus = append(nalus, spsOf(t, c))
	assertNoPlaintext(t, data, nalus)
	if o, e, code := camvault(t, "verify", inc.ID, "--data", data, "--identity", identityPath(data)); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, o, e)
	}
	exp := checkExport(t, s, inc, c)

	// Plaintext is only ever written where an authorised person asks, never in the data dir.
	_, e, code := camvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", filepath.Join(data, "x"), "--data", data)
	if code == 0 || !strings.Contains(e, "inside the data directory") {
		t.Fatalf("export into the data dir: exit %d, %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(data, "x")); err == nil {
		t.Fatal("export wrote into the data dir")
	}
	_ = exp
}

func TestFFmpegPublishUDP(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "udp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Chunks < 3 {
		t.Fatalf("only %d chunks stored\n%s", inc.Chunks, s.logs())
	}
	checkExport(t, s, inc, c)
}
