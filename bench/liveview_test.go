package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// glassPage publishes a canvas over WHIP and watches it back over WHEP in
// the same page, so that one clock stamps and reads the pictures: every
// frame drawn carries the page's time in milliseconds (16 bits and their
// complement, as black and white blocks), and each frame the viewer's
// video element presents (requestVideoFrameCallback) is read back and
// its age taken. That is glass to glass on loopback: capture, encode,
// WHIP, the node's forward, WHEP, jitter buffer, decode, presentation.
const glassPage = `<!doctype html>
<title>starting</title>
<video id="v" muted autoplay playsinline></video>
<script>
const q = new URLSearchParams(location.search);
const endpoint = q.get("endpoint"), token = q.get("token"), seconds = Number(q.get("seconds"));
const sleep = ms => new Promise(r => setTimeout(r, ms));
function report(s) { document.title = s.slice(0, 200); return fetch("/report", {method: "POST", body: s}); }
const W = 640, H = 360, COLS = 8, ROWS = 4;
function draw(ctx) {
  const t = Math.round(performance.now()) & 0xffff, bits = t | ((~t & 0xffff) << 16);
  for (let i = 0; i < 32; i++) {
    ctx.fillStyle = (bits >>> i) & 1 ? "#fff" : "#000";
    ctx.fillRect((i % COLS) * W / COLS, Math.floor(i / COLS) * H / ROWS, W / COLS, H / ROWS);
  }
}
function read(ctx, w, h) {
  const px = ctx.getImageData(0, 0, w, h).data;
  let bits = 0;
  for (let i = 0; i < 32; i++) {
    const x = Math.floor(((i % COLS) + 0.5) * w / COLS), y = Math.floor((Math.floor(i / COLS) + 0.5) * h / ROWS);
    if (px[(y * w + x) * 4 + 1] > 128) bits |= 1 << i;
  }
  const t = bits & 0xffff;
  return ((bits >>> 16) & 0xffff) === (~t & 0xffff) ? t : -1;
}
(async () => {
  try {
    const src = document.createElement("canvas");
    src.width = W; src.height = H;
    const sctx = src.getContext("2d");
    draw(sctx);
    setInterval(() => draw(sctx), 10);
    const stream = src.captureStream(30);
    const pub = new RTCPeerConnection();
    const tx = pub.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly"});
    tx.setCodecPreferences(RTCRtpSender.getCapabilities("video").codecs.filter(c =>
      c.mimeType === "video/H264" && (c.sdpFmtpLine || "").includes("packetization-mode=1")));
    const params = tx.sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await tx.sender.setParameters(params);
    await pub.setLocalDescription(await pub.createOffer());
    while (pub.iceGatheringState !== "complete") await sleep(50);
    let res = await fetch(endpoint, {method: "POST", body: pub.localDescription.sdp,
      headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
    if (res.status !== 201) throw new Error("WHIP " + res.status + " " + await res.text());
    await pub.setRemoteDescription({type: "answer", sdp: await res.text()});
    // The grant: once the camera's incident is open.
    let g;
    for (let i = 0; ; i++) {
      const gr = await fetch("/grant", {method: "POST"});
      if (gr.status === 201) { g = await gr.json(); break; }
      if (i > 100) throw new Error("grant " + gr.status + " " + await gr.text());
      await sleep(200);
    }
    const view = new RTCPeerConnection();
    view.addTransceiver("video", {direction: "recvonly"});
    await view.setLocalDescription(await view.createOffer());
    while (view.iceGatheringState !== "complete") await sleep(50);
    res = await fetch(g.whep_url, {method: "POST", body: view.localDescription.sdp,
      headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + g.token}});
    if (res.status !== 201) throw new Error("WHEP " + res.status + " " + await res.text());
    const video = document.getElementById("v");
    view.ontrack = e => { video.srcObject = new MediaStream([e.track]); video.play(); };
    await view.setRemoteDescription({type: "answer", sdp: await res.text()});
    const out = document.createElement("canvas"), octx = out.getContext("2d", {willReadFrequently: true});
    const r = {delays: [], unreadable: 0, frames: 0};
    let first = -1;
    const onFrame = () => {
      const now = Math.round(performance.now());
      const w = video.videoWidth, h = video.videoHeight;
      if (w > 0) {
        if (first < 0) first = now;
        r.frames++;
        out.width = w; out.height = h;
        octx.drawImage(video, 0, 0, w, h);
        const t = read(octx, w, h);
        // The first second is the jitter buffer settling: not counted.
        if (t < 0) r.unreadable++;
        else if (now - first > 1000) r.delays.push((now - t) & 0xffff);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    await sleep(seconds * 1000);
    view.close(); pub.close();
    await report("DONE " + JSON.stringify(r));
  } catch (e) {
    await report("ERROR " + e);
  }
})();
</script>`

// liveNode is a serve process with --live-view, one operator and its
// API token, and its cameras' secrets.
type liveNode struct {
	*soakServer
	api, whip string
	metrics   int
	operator  string
	secrets   map[string]string
}

func startLiveNode(b *testing.B, bin string, cameras ...string) *liveNode {
	b.Helper()
	data := filepath.Join(b.TempDir(), "data")
	run := func(stdin string, args ...string) string {
		cmd := exec.Command(bin, append(args, "--data", data)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("camvault %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	run("", "keygen")
	n := &liveNode{secrets: map[string]string{}, metrics: freePort()}
	for _, c := range cameras {
		n.secrets[c] = run("", "camera", "add", c, "--officer", "officer "+c)
	}
	run("a long enough password\n", "user", "add", "olga", "--role", "operator", "--by", "bench")
	n.operator = run("", "user", "token", "olga")
	httpPort, whipPort := freePort(), freePort()
	n.api = fmt.Sprintf("http://127.0.0.1:%d/api/v1", httpPort)
	n.whip = fmt.Sprintf("http://127.0.0.1:%d/whip/", whipPort)
	n.soakServer = &soakServer{bin: bin, data: data, args: []string{"--no-demo", "--log-level", "warn", "--live-view",
		"--rtsp", fmt.Sprintf("127.0.0.1:%d", freePort()), "--rtsp-rtp", "", "--rtsp-rtcp", "",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--metrics", fmt.Sprintf("127.0.0.1:%d", n.metrics),
		"--whip", fmt.Sprintf("127.0.0.1:%d", whipPort), "--ice-udp", fmt.Sprintf("127.0.0.1:%d", freePort()),
		"--transcode-workers", "0"}}
	if err := n.start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.stop() })
	return n
}

// grant asks the backoffice for a live view of the camera's open
// incident: the answer's status and body.
func (n *liveNode) grant(camera, reason string) (int, []byte, error) {
	out, err := exec.Command(n.bin, "incidents", "--json", "--data", n.data).Output()
	if err != nil {
		return 0, nil, fmt.Errorf("incidents: %w", err)
	}
	var rows []struct{ ID, Camera, Status string }
	if err := json.Unmarshal(out, &rows); err != nil {
		return 0, nil, fmt.Errorf("incidents: %w", err)
	}
	id := ""
	for _, r := range rows {
		if r.Camera == camera && r.Status == "open" {
			id = r.ID
		}
	}
	if id == "" {
		return http.StatusNotFound, []byte("no open incident yet"), nil
	}
	body, _ := json.Marshal(map[string]string{"reason": reason})
	req, _ := http.NewRequest("POST", n.api+"/incidents/"+id+"/live", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+n.operator)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("grant: %w", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, nil
}

// BenchmarkLiveView: what a live view costs. Glass to glass: headless
// Chromium publishes a canvas stamped with its clock over WHIP and
// watches it back over WHEP (glassPage), p50 and p99 of the pictures'
// age when presented. CPU per viewer: a simulated WebRTC camera (2 Mbit/s
// H.264) records for a window without viewers and one with
// CAMVAULT_BENCH_LIVE_VIEWERS (default 10) pion viewers; the serve
// process's CPU (from /proc) of the second less the first, per viewer.
// CAMVAULT_BENCH_SECONDS (default 20) is each window's length.
func BenchmarkLiveView(b *testing.B) {
	bin, clip := loadSetup(b, "2M")
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		b.Fatalf("chromium is required: %v", err)
	}
	viewers := envInt(b, "CAMVAULT_BENCH_LIVE_VIEWERS", 10)
	d := time.Duration(envSeconds(b)) * time.Second
	var delays []float64
	var perViewer, cpuOff, cpuOn float64
	for i := 0; i < b.N; i++ {
		n := startLiveNode(b, bin, "glass", "cam")
		delays = append(delays, glassToGlass(b, n, chromium, d)...)

		ctx, cancel := context.WithCancel(context.Background())
		published := make(chan error, 1)
		go func() {
			_, err := clip.PublishWHIP(ctx, WHIPOptions{Endpoint: n.whip + "cam", Token: n.secrets["cam"], Duration: 2*d + 15*time.Second})
			published <- err
		}()
		var g struct {
			WHEP  string `json:"whep_url"`
			Token string `json:"token"`
		}
		// The camera's incident open: the window without viewers.
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body, err := n.grant("cam", "benchmark viewer 0")
			if err != nil {
				b.Fatal(err)
			}
			if code == http.StatusCreated {
				json.Unmarshal(body, &g)
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("grant: %d %s", code, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		pid, _ := n.pid()
		time.Sleep(2 * time.Second)
		c0, t0 := cpuSeconds(pid), time.Now()
		time.Sleep(d)
		c1, t1 := cpuSeconds(pid), time.Now()
		off := (c1 - c0) / t1.Sub(t0).Seconds()
		var open []*WHEPViewer
		for k := 0; k < viewers; k++ {
			if k > 0 {
				code, body, err := n.grant("cam", fmt.Sprintf("benchmark viewer %d", k))
				if err != nil || code != http.StatusCreated {
					b.Fatalf("grant %d: %d %s %v", k, code, body, err)
				}
				json.Unmarshal(body, &g)
			}
			v, err := ViewWHEP(ctx, g.WHEP, g.Token)
			if err != nil {
				b.Fatalf("viewer %d: %v", k, err)
			}
			open = append(open, v)
		}
		// Past the viewers' connection setup: the forward alone.
		time.Sleep(2 * time.Second)
		c2, t2 := cpuSeconds(pid), time.Now()
		time.Sleep(d)
		c3, t3 := cpuSeconds(pid), time.Now()
		on := (c3 - c2) / t3.Sub(t2).Seconds()
		for k, v := range open {
			if v.Packets.Load() == 0 {
				b.Fatalf("viewer %d received nothing", k)
			}
			v.Close()
		}
		cancel()
		<-published
		b.Logf("serve: %.1f millicores without viewers, %.1f with %d", off*1000, on*1000, viewers)
		cpuOff += off
		cpuOn += on
		perViewer += (on - off) / float64(viewers)
	}
	if len(delays) == 0 {
		b.Fatal("no picture read back")
	}
	slices.Sort(delays)
	at := func(q float64) float64 { return delays[min(len(delays)-1, int(q*float64(len(delays))))] }
	b.ReportMetric(at(0.5), "ms-p50")
	b.ReportMetric(at(0.99), "ms-p99")
	b.ReportMetric(perViewer/float64(b.N)*1000, "millicores/viewer")
	b.ReportMetric(cpuOff/float64(b.N)*1000, "no-viewer-millicores")
	b.ReportMetric(cpuOn/float64(b.N)*1000, "viewers-millicores")
}

// glassToGlass runs glassPage against the node for d and returns the
// pictures' delays in milliseconds.
func glassToGlass(b *testing.B, n *liveNode, chromium string, d time.Duration) []float64 {
	b.Helper()
	reports := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /glass.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, glassPage)
	})
	mux.HandleFunc("POST /grant", func(w http.ResponseWriter, _ *http.Request) {
		code, body, err := n.grant("glass", "glass-to-glass benchmark")
		if err != nil {
			code, body = http.StatusInternalServerError, []byte(err.Error())
		}
		w.WriteHeader(code)
		w.Write(body)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		select {
		case reports <- string(body):
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	page := &http.Server{Handler: mux}
	go page.Serve(ln)
	defer page.Close()
	u := fmt.Sprintf("http://%s/glass.html?%s", ln.Addr(), url.Values{
		"endpoint": {n.whip + "glass"}, "token": {n.secrets["glass"]}, "seconds": {fmt.Sprint(int(d.Seconds()))}}.Encode())
	ctx, cancel := context.WithTimeout(context.Background(), d+90*time.Second)
	defer cancel()
	logPath := filepath.Join(b.TempDir(), "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+b.TempDir(), "--remote-debugging-port=0", "--autoplay-policy=no-user-gesture-required",
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns", u)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var got string
	select {
	case got = <-reports:
	case <-ctx.Done():
		log, _ := os.ReadFile(logPath)
		b.Fatalf("the glass-to-glass page reported nothing\nchromium: %.3000s", log)
	}
	rest, ok := strings.CutPrefix(got, "DONE ")
	if !ok {
		b.Fatalf("glass-to-glass page: %s", got)
	}
	var r struct {
		Delays     []float64 `json:"delays"`
		Unreadable int       `json:"unreadable"`
		Frames     int       `json:"frames"`
	}
	if err := json.Unmarshal([]byte(rest), &r); err != nil {
		b.Fatalf("glass-to-glass report: %v", err)
	}
	b.Logf("glass to glass: %d frames presented, %d read, %d unreadable", r.Frames, len(r.Delays), r.Unreadable)
	return r.Delays
}
