package e2e

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"camvault/bench"
)

// A WebRTC camera (pion) publishing over WHIP becomes an incident like an
// RTSP one, and its export carries exactly the H.264 it sent.
func TestWHIPPublishExport(t *testing.T) {
	requireTool(t, "ffprobe")
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	const seconds = 6
	c, err := bench.MakeClip(seconds, "2M")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PublishWHIP(context.Background(), bench.WHIPOptions{Endpoint: s.whipURL("cam1"), Token: secrets["cam1"],
		Duration: seconds * time.Second, Teardown: true})
	if err != nil {
		t.Fatalf("publish: %v\n%s", err, tail(s.logs(), 3000))
	}
	if res.Frames != int64(len(c.NALUs)) {
		t.Fatalf("sent %d pictures, the clip has %d", res.Frames, len(c.NALUs))
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Status != "closed" {
		t.Fatalf("incident %s after DELETE, want closed", inc.Status)
	}

	out, files := exportIncident(t, data, inc.ID, 1)
	var sent [][]byte
	for _, au := range c.NALUs {
		for _, n := range au {
			if typ := h264.NALUType(n[0] & 0x1f); typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR {
				sent = append(sent, n)
			}
		}
	}
	got := vclNALUs(t, files[0])
	if len(got) != len(sent) {
		t.Fatalf("export has %d pictures, the camera sent %d", len(got), len(sent))
	}
	for i := range sent {
		if string(got[i]) != string(sent[i]) {
			t.Fatalf("picture %d differs from what the camera sent", i)
		}
	}
	if d := probeDuration(t, files[0]); math.Abs(d-seconds) > 2.0 {
		t.Fatalf("export lasts %.2f s, sent %d s", d, seconds)
	}
	if rep := verifyBundle(t, data, out); !strings.Contains(rep, "carries exactly the sealed samples") {
		t.Fatalf("the export is not the camera's own H.264:\n%s", rep)
	}
}

// A WebRTC camera that drops off and comes back within the grace window
// continues its incident, like an RTSP one; the manifest records the gap.
func TestWHIPReconnectContinuesIncident(t *testing.T) {
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	c, err := bench.MakeClip(4, "1M")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		// No DELETE: the connection is just closed, as when a camera
		// loses its network.
		if _, err := c.PublishWHIP(context.Background(), bench.WHIPOptions{Endpoint: s.whipURL("cam1"), Token: secrets["cam1"],
			Duration: 3 * time.Second}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if inc := waitIncidentEnded(t, s, "cam1"); inc.Status != "interrupted" {
			t.Fatalf("a camera gone without DELETE left the incident %s", inc.Status)
		}
	}
	rows := incidents(t, data)
	if len(rows) != 1 {
		t.Fatalf("%d incidents, want the reconnect to continue one", len(rows))
	}
	out, _ := exportIncident(t, data, rows[0].ID, 2) // one file per session
	m, _ := os.ReadFile(filepath.Join(out, "manifest.jsonl"))
	if !strings.Contains(string(m), `"kind":"gap"`) || !strings.Contains(string(m), "reconnect after") {
		t.Fatalf("manifest has no reconnect gap:\n%s", m)
	}
}

// Packets lost for good on a WebRTC link become a gap record in the
// manifest; what was recorded decodes without a single error, and the
// bundle verifies.
func TestWHIPUnrepairedLossIsAGapRecord(t *testing.T) {
	requireTool(t, "ffmpeg")
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	c, err := bench.MakeClip(6, "2M")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PublishWHIP(context.Background(), bench.WHIPOptions{Endpoint: s.whipURL("cam1"), Token: secrets["cam1"],
		Duration: 6 * time.Second, Teardown: true, Drop: func(seq uint16) bool { return seq >= 500 && seq < 504 }})
	if err != nil {
		t.Fatal(err)
	}
	inc := waitIncidentEnded(t, s, "cam1")
	out, files := exportIncident(t, data, inc.ID, 1)
	m, _ := os.ReadFile(filepath.Join(out, "manifest.jsonl"))
	if !strings.Contains(string(m), `"kind":"gap"`) || !strings.Contains(string(m), "4 RTP packet(s) of track 0 lost in transit") {
		t.Fatalf("manifest has no gap for the lost packets:\n%s", m)
	}
	frames := len(framemd5(t, files[0]))
	if frames >= int(res.Frames) || frames < int(res.Frames)-2*c.FPS {
		t.Fatalf("export has %d of %d pictures: want those up to the next keyframe left out, no more", frames, res.Frames)
	}
	if errs, err := exec.Command("ffmpeg", "-v", "error", "-i", files[0], "-f", "null", "-").CombinedOutput(); err != nil || len(bytes.TrimSpace(errs)) != 0 {
		t.Fatalf("the recording does not decode cleanly: %v\n%s", err, errs)
	}
	if rep := verifyBundle(t, data, out); !strings.Contains(rep, "gap:") {
		t.Fatalf("the report does not show the gap:\n%s", rep)
	}
}
