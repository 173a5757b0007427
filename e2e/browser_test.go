package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// publishPage publishes the browser's (fake) camera and microphone over
// WHIP with nothing but RTCPeerConnection and fetch, as any web page or
// phone could, then reports what the browser's own statistics say it sent.
const publishPage = `<!doctype html>
<title>starting</title>
<script>
const q = new URLSearchParams(location.search);
const endpoint = q.get("endpoint"), token = q.get("token"), codec = q.get("codec"), seconds = Number(q.get("seconds"));
const sleep = ms => new Promise(r => setTimeout(r, ms));
function report(s) { document.title = s.slice(0, 200); return fetch("/report", {method: "POST", body: s}); }
(async () => {
  try {
    const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480, frameRate: 30}, audio: true});
    const pc = new RTCPeerConnection();
    const video = pc.addTransceiver(media.getVideoTracks()[0], {direction: "sendonly"});
    pc.addTransceiver(media.getAudioTracks()[0], {direction: "sendonly"});
    const wanted = RTCRtpSender.getCapabilities("video").codecs.filter(c =>
      c.mimeType.toLowerCase() === "video/" + codec &&
      (codec !== "h264" || (c.sdpFmtpLine || "").includes("packetization-mode=1")));
    if (wanted.length === 0) throw new Error("browser cannot send " + codec);
    video.setCodecPreferences(wanted);
    await pc.setLocalDescription(await pc.createOffer());
    while (pc.iceGatheringState !== "complete") await sleep(50);
    const res = await fetch(endpoint, {method: "POST", body: pc.localDescription.sdp,
      headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
    if (res.status !== 201) throw new Error("POST " + res.status + " " + await res.text());
    const session = new URL(res.headers.get("Location"), endpoint).toString();
    await pc.setRemoteDescription({type: "answer", sdp: await res.text()});
    await sleep(seconds * 1000);
    const stats = await pc.getStats();
    const sent = {};
    stats.forEach(s => {
      if (s.type === "outbound-rtp" && s.kind === "video") {
        sent.codec = (stats.get(s.codecId) || {}).mimeType;
        sent.framesSent = s.framesSent;
        sent.keyFrames = s.keyFramesEncoded;
        sent.pli = s.pliCount;
      }
    });
    sent.connection = pc.connectionState;
    const del = await fetch(session, {method: "DELETE", headers: {"Authorization": "Bearer " + token}});
    sent.deleteStatus = del.status;
    pc.close();
    await report("DONE " + JSON.stringify(sent));
  } catch (e) {
    await report("ERROR " + e);
  }
})();
</script>`

type browserReport struct {
	Codec        string `json:"codec"`
	FramesSent   int    `json:"framesSent"`
	KeyFrames    int    `json:"keyFrames"`
	PLI          int    `json:"pli"`
	Connection   string `json:"connection"`
	DeleteStatus int    `json:"deleteStatus"`
}

// publishFromChromium serves the page on its own origin (so CORS is part
// of the test), runs headless Chromium with a fake camera on it, and
// returns the page's report.
func publishFromChromium(t *testing.T, endpoint, token, codec string, seconds int) browserReport {
	t.Helper()
	chromium := requireTool(t, "chromium")
	reports := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /publish.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, publishPage)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		select {
		case reports <- string(b):
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: mux}
	go page.Serve(ln)
	defer page.Close()

	u := fmt.Sprintf("http://%s/publish.html?%s", ln.Addr(), url.Values{
		"endpoint": {endpoint}, "token": {token}, "codec": {codec}, "seconds": {fmt.Sprint(seconds)},
	}.Encode())
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+60)*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+profile, "--remote-debugging-port=0",
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--autoplay-policy=no-user-gesture-required",
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
		u)
	logPath := filepath.Join(t.TempDir(), "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var got string
	select {
	case got = <-reports:
	case <-ctx.Done():
		b, _ := os.ReadFile(logPath)
		t.Fatalf("the page reported nothing\nchromium: %s", tail(string(b), 3000))
	}
	rest, ok := strings.CutPrefix(got, "DONE ")
	if !ok {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("page: %s\nchromium: %s", got, tail(string(b), 3000))
	}
	var rep browserReport
	if err := json.Unmarshal([]byte(rest), &rep); err != nil {
		t.Fatalf("page report %q: %v", rest, err)
	}
	return rep
}

// Headless Chromium publishes its fake camera and microphone over WHIP,
// once preferring VP8 and once H.264: the browser's statistics confirm the
// codec it sent, the incident closes on DELETE, and the export is an
// H.264/AAC MP4 (VP8 and Opus transcoded, H.264 copied) that plays for as
// long as the browser streamed.
func TestBrowserPublishesOverWHIP(t *testing.T) {
	requireTool(t, "ffprobe")
	const seconds = 10
	for _, tc := range []struct{ codec, mime string }{
		{"h264", "video/H264"},
		{"vp8", "video/VP8"},
	} {
		t.Run(tc.codec, func(t *testing.T) {
			data, secrets := setupData(t, "phone1")
			s := newServer(t, data)
			rep := publishFromChromium(t, s.whipURL("phone1"), secrets["phone1"], tc.codec, seconds)
			t.Logf("browser sent: %+v", rep)
			if rep.Codec != tc.mime {
				t.Fatalf("browser sent %q, preferred %s", rep.Codec, tc.mime)
			}
			if rep.DeleteStatus != http.StatusOK || rep.FramesSent < 10*seconds {
				t.Fatalf("DELETE %d, %d frames sent", rep.DeleteStatus, rep.FramesSent)
			}
			if rep.KeyFrames < 3 {
				t.Fatalf("%d keyframes in %d s: camvault's keyframe requests were not answered", rep.KeyFrames, seconds)
			}
			inc := waitIncidentEnded(t, s, "phone1")
			if inc.Status != "closed" {
				t.Fatalf("incident %s after DELETE, want closed", inc.Status)
			}
			out, files := exportIncident(t, data, inc.ID, 1)
			streams := strings.Fields(string(runCmd(t, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "default=nw=1:nk=1", files[0])))
			if got := strings.Join(streams, ","); got != "h264,aac" && got != "aac,h264" {
				t.Fatalf("export streams %v, want h264 and aac", streams)
			}
			if d := probeDuration(t, files[0]); math.Abs(d-seconds) > 2.5 {
				t.Fatalf("export lasts %.2f s, the browser streamed %d s", d, seconds)
			}
			verifyBundle(t, data, out)
		})
	}
}
