package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// ffmpegLiveCamera publishes a test pattern as an RTSP camera for
// seconds, with a one-second GOP (as a bodycam tuned for live viewing),
// optionally with AAC audio.
func ffmpegLiveCamera(t *testing.T, url string, seconds int, audio bool) *exec.Cmd {
	t.Helper()
	requireTool(t, "ffmpeg")
	args := []string{"-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"}
	if audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "aac")
	}
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-bf", "0",
		"-pix_fmt", "yuv420p", "-t", fmt.Sprint(seconds), "-f", "rtsp", "-rtsp_transport", "tcp", url)
	cmd := exec.Command("ffmpeg", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// An RTSP camera (the ffmpeg CLI, H.264 and AAC) watched live in headless
// Chromium: its H.264 from the next keyframe, with the SPS and PPS of its
// SDP, within 2 s; AAC is left out; the view ends at the grant's limit.
func TestLiveViewRTSPCamera(t *testing.T) {
	const limit = 5 * time.Second
	f := newLiveFixture(t, "cam1", "--live-view-max", limit.String())
	ffmpegLiveCamera(t, f.s.rtspURL("cam1", f.secrets["cam1"], "cam1"), 40, true)
	inc := f.openIncident(t, "cam1")
	const reason = "pursuit in progress"
	rep := viewFromChromium(t, func(fp string) (int, []byte) { return f.grant(t, f.olga, inc, reason, fp) }, 18)
	f.checkViewed(t, rep, inc, reason, limit)
	if rep.Codec != "video/H264" || rep.AudioPackets != 0 {
		t.Fatalf("viewer got %q and %d audio packets, want H.264 and no audio (AAC is not forwarded)", rep.Codec, rep.AudioPackets)
	}
}

// pionViewer opens a live view with a Go WebRTC client and counts the
// video packets it receives.
func pionViewer(t *testing.T, whepURL, token string, got *atomic.Int64) *webrtc.PeerConnection {
	t.Helper()
	var me webrtc.MediaEngine
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(&me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			got.Add(1)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	req, _ := http.NewRequest("POST", whepURL, strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP: %d %s", res.StatusCode, answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		t.Fatal(err)
	}
	return pc
}

// Ten viewers on one RTSP camera: every viewer gets the stream, the
// recording has no gap, and the camera's end ends (and audits) every view.
func TestLiveViewTenViewersRecordingWhole(t *testing.T) {
	f := newLiveFixture(t, "cam1")
	cam := ffmpegLiveCamera(t, f.s.rtspURL("cam1", f.secrets["cam1"], "cam1"), 15, false)
	inc := f.openIncident(t, "cam1")
	counts := make([]atomic.Int64, 10)
	for i := range counts {
		code, b := f.grant(t, f.olga, inc, fmt.Sprintf("viewer %d", i), "")
		if code != http.StatusCreated {
			t.Fatalf("grant %d: %d %s", i, code, b)
		}
		var g struct {
			WHEP  string `json:"whep_url"`
			Token string `json:"token"`
		}
		json.Unmarshal(b, &g)
		pionViewer(t, g.WHEP, g.Token, &counts[i])
	}
	if got := f.liveMetric(t, "camvault_live_views_open"); got != "10" {
		t.Fatalf("%s views open, want 10", got)
	}
	cam.Wait()
	inc2 := waitIncidentEnded(t, f.s, "cam1")
	for i := range counts {
		if counts[i].Load() < 100 {
			t.Errorf("viewer %d received %d packets", i, counts[i].Load())
		}
	}
	code, b, _ := apiCall(t, f.olga, "GET", f.api+"/incidents/"+inc2.ID, "")
	if code != http.StatusOK {
		t.Fatalf("incident: %d %s", code, b)
	}
	var d struct {
		Gaps []json.RawMessage `json:"gaps"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Gaps) != 0 {
		t.Fatalf("the recording has %d gaps with 10 viewers: %s", len(d.Gaps), b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.liveMetric(t, "camvault_live_views_open") != "0" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(f.auditOf(t, "live.view.ended")); n != 10 {
		t.Fatalf("%d views ended when the camera stopped, want 10", n)
	}
}
