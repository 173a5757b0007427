package e2e

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
	"regexp"
	"strings"
	"testing"
	"time"
)

// viewPage is a control-room viewer with nothing but RTCPeerConnection
// and fetch: it makes its offer, asks the test (standing in for the
// backoffice page) for a grant bound to its connection's fingerprint,
// posts the offer to the WHEP URL with the grant, and reports when the
// first frame was decoded and when the connection ended.
const viewPage = `<!doctype html>
<title>starting</title>
<script>
const q = new URLSearchParams(location.search);
const watch = Number(q.get("watch"));
const sleep = ms => new Promise(r => setTimeout(r, ms));
function report(s) { document.title = s.slice(0, 200); return fetch("/report", {method: "POST", body: s}); }
(async () => {
  try {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", {direction: "recvonly"});
    pc.addTransceiver("audio", {direction: "recvonly"});
    await pc.setLocalDescription(await pc.createOffer());
    while (pc.iceGatheringState !== "complete") await sleep(50);
    const fp = pc.localDescription.sdp.match(/a=fingerprint:(.*)/)[1].trim();
    const gr = await fetch("/grant", {method: "POST", body: fp});
    if (gr.status !== 201) throw new Error("grant " + gr.status + " " + await gr.text());
    const g = await gr.json();
    const res = await fetch(g.whep_url, {method: "POST", body: pc.localDescription.sdp,
      headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + g.token}});
    if (res.status !== 201) throw new Error("WHEP POST " + res.status + " " + await res.text());
    const joined = performance.now();
    await pc.setRemoteDescription({type: "answer", sdp: await res.text()});
    const r = {firstFrameMs: -1, endedMs: -1, lastFrameMs: -1, frames: 0, audioPackets: 0, codec: "", states: []};
    pc.onconnectionstatechange = () => r.states.push(pc.connectionState + "@" + Math.round(performance.now() - joined));
    while (performance.now() < joined + watch * 1000) {
      const stats = await pc.getStats();
      let frames = 0;
      stats.forEach(s => {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          frames = s.framesDecoded || 0;
          r.codec = (stats.get(s.codecId) || {}).mimeType || r.codec;
        }
        if (s.type === "inbound-rtp" && s.kind === "audio") r.audioPackets = s.packetsReceived || 0;
      });
      const now = performance.now() - joined;
      if (frames > r.frames) r.lastFrameMs = now;
      r.frames = frames;
      if (frames > 0 && r.firstFrameMs < 0) r.firstFrameMs = now;
      const st = pc.connectionState;
      if (r.firstFrameMs >= 0 && r.endedMs < 0 && (st === "closed" || st === "failed" || st === "disconnected")) r.endedMs = now;
      await sleep(50);
    }
    r.connection = pc.connectionState;
    pc.close();
    await report("DONE " + JSON.stringify(r));
  } catch (e) {
    await report("ERROR " + e);
  }
})();
</script>`

type viewReport struct {
	FirstFrameMs float64  `json:"firstFrameMs"`
	EndedMs      float64  `json:"endedMs"`
	LastFrameMs  float64  `json:"lastFrameMs"`
	Frames       int      `json:"frames"`
	AudioPackets int      `json:"audioPackets"`
	Codec        string   `json:"codec"`
	States       []string `json:"states"`
	Connection   string   `json:"connection"`
}

// viewFromChromium runs the viewer page in its own headless Chromium for
// watch seconds; grant answers the page's grant request (the fingerprint
// it sends) with the backoffice's answer.
func viewFromChromium(t *testing.T, grant func(fingerprint string) (int, []byte), watch int) viewReport {
	t.Helper()
	chromium := requireTool(t, "chromium")
	reports := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /view.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, viewPage)
	})
	mux.HandleFunc("POST /grant", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10))
		code, body := grant(strings.TrimSpace(string(b)))
		w.WriteHeader(code)
		w.Write(body)
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
	u := fmt.Sprintf("http://%s/view.html?%s", ln.Addr(), url.Values{"watch": {fmt.Sprint(watch)}}.Encode())
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(watch+60)*time.Second)
	defer cancel()
	logPath := filepath.Join(t.TempDir(), "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0",
		"--autoplay-policy=no-user-gesture-required",
		"--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns", u)
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
		t.Fatalf("the viewer page reported nothing\nchromium: %s", tail(string(b), 3000))
	}
	rest, ok := strings.CutPrefix(got, "DONE ")
	if !ok {
		t.Fatalf("viewer page: %s", got)
	}
	var rep viewReport
	if err := json.Unmarshal([]byte(rest), &rep); err != nil {
		t.Fatalf("viewer report %q: %v", rest, err)
	}
	return rep
}

// liveFixture is a node with --live-view, an operator, a reviewer and an
// auditor.
type liveFixture struct {
	s                  *server
	data               string
	secrets            map[string]string
	olga, rita, audrey string // tokens: operator, reviewer, auditor
	api                string
}

func newLiveFixture(t *testing.T, cameras []string, extra ...string) *liveFixture {
	data, secrets := setupData(t, cameras...)
	f := &liveFixture{data: data, secrets: secrets}
	for _, u := range []struct{ name, role string }{{"olga", "operator"}, {"rita", "reviewer"}, {"audrey", "auditor"}} {
		addUser(t, data, u.name, u.role)
	}
	tok := func(name string) string {
		return strings.TrimSpace(mustCamvault(t, "user", "token", name, "--data", data))
	}
	f.olga, f.rita, f.audrey = tok("olga"), tok("rita"), tok("audrey")
	f.s = newServer(t, data, append([]string{"--live-view"}, extra...)...)
	f.api = fmt.Sprintf("http://127.0.0.1:%d/api/v1", f.s.httpPort)
	return f
}

// openIncident waits for the camera's incident to be open (recording).
func (f *liveFixture) openIncident(t *testing.T, camera string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, in := range incidents(t, f.data) {
			if in.Camera == camera && in.Status == "open" {
				return in.ID
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no open incident for %s\n%s", camera, tail(f.s.logs(), 3000))
	return ""
}

func (f *liveFixture) grant(t *testing.T, token, incident, reason, fingerprint string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"reason": reason, "fingerprint": fingerprint})
	code, b, _ := apiCall(t, token, "POST", f.api+"/incidents/"+incident+"/live", string(body))
	return code, b
}

// whepPost posts an offer carrying fingerprint to a WHEP URL.
func whepPost(t *testing.T, whepURL, token, fingerprint string) int {
	t.Helper()
	offer := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:" + fingerprint + "\r\n"
	req, _ := http.NewRequest("POST", whepURL, strings.NewReader(offer))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// liveMetric reads a camvault_live_views_* value from /metrics.
func (f *liveFixture) liveMetric(t *testing.T, name string) string {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", f.s.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	return string(m[1])
}

// auditOf returns the audit records with action.
func (f *liveFixture) auditOf(t *testing.T, action string) []map[string]any {
	t.Helper()
	code, b, _ := apiCall(t, f.audrey, "GET", f.api+"/audit", "")
	if code != http.StatusOK {
		t.Fatalf("audit: %d %s", code, b)
	}
	var recs []map[string]any
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range recs {
		if r["action"] == action {
			out = append(out, r)
		}
	}
	return out
}

const fakeFP = "sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"

// checkViewed asserts what the viewer saw of a camera and what the audit
// trail says of it: frames within 2 s of joining, the view closed at the
// grant's limit, opened and ended records with person, reason, incident
// and duration.
func (f *liveFixture) checkViewed(t *testing.T, rep viewReport, incident, reason string, limit time.Duration) {
	t.Helper()
	t.Logf("viewer: %+v", rep)
	if rep.Frames == 0 || rep.FirstFrameMs < 0 || rep.FirstFrameMs > 2000 {
		t.Fatalf("first frame %.0f ms after joining (%d frames), want within 2 s\n%s", rep.FirstFrameMs, rep.Frames, tail(f.s.logs(), 3000))
	}
	// The view ends at its limit: the pictures stop and the connection goes.
	if rep.LastFrameMs > float64(limit.Milliseconds())+1500 {
		t.Fatalf("frames until %.0f ms, the grant ends the view at %v", rep.LastFrameMs, limit)
	}
	// The node closes the connection at the limit; the browser notices
	// it when its consent checks go unanswered, a few seconds later.
	if rep.EndedMs < 0 || rep.EndedMs > float64((limit+10*time.Second).Milliseconds()) {
		t.Fatalf("the connection was not closed at the grant's limit: states %v", rep.States)
	}
	opened, ended := f.auditOf(t, "live.view.opened"), f.auditOf(t, "live.view.ended")
	if len(opened) == 0 || len(ended) != 1 {
		t.Fatalf("audit: %d opened, %d ended records", len(opened), len(ended))
	}
	last := opened[len(opened)-1]
	d, _ := last["details"].(map[string]any)
	if last["actor"] != "olga" || last["incident"] != incident || d["reason"] != reason {
		t.Fatalf("opened record %v", last)
	}
	e := ended[0]
	ed, _ := e["details"].(map[string]any)
	dur, _ := ed["duration_s"].(float64)
	if e["actor"] != "olga" || e["incident"] != incident || ed["reason"] != reason || ed["grant"] != d["grant"] ||
		dur < limit.Seconds()-1.5 || dur > limit.Seconds()+1.5 || !strings.Contains(fmt.Sprint(ed["why"]), "time limit") {
		t.Fatalf("ended record %v, want olga's view of %s for about %v ended by its limit", e, incident, limit)
	}
	if got := f.liveMetric(t, "camvault_live_views_open"); got != "0" {
		t.Fatalf("%s views open after the view ended", got)
	}
}

// A WebRTC camera (headless Chromium, fake camera) records while an
// operator, with a grant, watches it live in a second headless Chromium:
// pictures within 2 s, the view ends at its limit, both ends audited.
// Around it, every refusal: the wrong role, no reason, no incident, a
// grant not used in time, one for another camera, a reused grant,
// someone else's connection, a forged grant; none leaves a view open.
func TestLiveViewWHIPCamera(t *testing.T) {
	const limit = 5 * time.Second
	f := newLiveFixture(t, []string{"phone1"}, "--live-view-max", limit.String())
	published := make(chan browserReport, 1)
	go func() { published <- publishFromChromium(t, f.s.whipURL("phone1"), f.secrets["phone1"], "h264", 45) }()
	// The publisher reports to t: the test must not end before it does.
	var pub browserReport
	waited := false
	t.Cleanup(func() {
		if !waited {
			<-published
		}
	})
	inc := f.openIncident(t, "phone1")

	if code, b := f.grant(t, f.rita, inc, "curious", ""); code != http.StatusForbidden {
		t.Fatalf("reviewer's grant: %d %s, want 403", code, b)
	}
	if code, b := f.grant(t, f.olga, inc, " ", ""); code != http.StatusBadRequest {
		t.Fatalf("grant without a reason: %d %s, want 400", code, b)
	}
	if code, b := f.grant(t, f.olga, "no-such-incident", "assist", ""); code != http.StatusNotFound {
		t.Fatalf("grant for no incident: %d %s, want 404", code, b)
	}

	// A grant nobody uses within its start window (the view's limit,
	// shorter than the default minute here): tried after the watch below.
	code, b := f.grant(t, f.olga, inc, "not used in time", fakeFP)
	if code != http.StatusCreated {
		t.Fatalf("grant: %d %s", code, b)
	}
	var unused struct {
		WHEP  string `json:"whep_url"`
		Token string `json:"token"`
	}
	json.Unmarshal(b, &unused)

	const reason = "officer pressed assist, checking the scene"
	var granted struct {
		WHEP  string `json:"whep_url"`
		Token string `json:"token"`
		Grant string `json:"grant"`
	}
	rep := viewFromChromium(t, func(fp string) (int, []byte) {
		code, b := f.grant(t, f.olga, inc, reason, fp)
		json.Unmarshal(b, &granted)
		return code, b
	}, 18)
	f.checkViewed(t, rep, inc, reason, limit)
	if rep.Codec != "video/H264" || rep.AudioPackets == 0 {
		t.Fatalf("viewer got %s and %d audio packets, want the camera's H.264 and Opus", rep.Codec, rep.AudioPackets)
	}

	// A grant bound to one viewer's connection: posted from another's, it
	// is refused and not spent; from its own, it is spent even though the
	// offer is no good; then it is refused as used.
	if code := whepPost(t, unused.WHEP, unused.Token, fakeFP); code != http.StatusUnauthorized {
		t.Fatalf("an unused grant past its start window: %d, want 401", code)
	}
	code, b = f.grant(t, f.olga, inc, reason, fakeFP)
	if code != http.StatusCreated {
		t.Fatalf("grant: %d %s", code, b)
	}
	var other struct {
		WHEP  string `json:"whep_url"`
		Token string `json:"token"`
	}
	json.Unmarshal(b, &other)
	if code := whepPost(t, other.WHEP, other.Token, strings.Replace(fakeFP, "00", "01", 1)); code != http.StatusForbidden {
		t.Fatalf("someone else's connection: %d, want 403", code)
	}
	if code := whepPost(t, strings.Replace(other.WHEP, "/whep/phone1", "/whep/phone2", 1), other.Token, fakeFP); code != http.StatusForbidden {
		t.Fatalf("a grant for another camera: %d, want 403", code)
	}
	if code := whepPost(t, other.WHEP, other.Token, fakeFP); code != http.StatusBadRequest {
		t.Fatalf("an offer that is no good: %d, want 400", code)
	}
	if code := whepPost(t, other.WHEP, other.Token, fakeFP); code != http.StatusForbidden {
		t.Fatalf("reused grant: %d, want 403", code)
	}
	// The page's grant, used and past its start window.
	if code := whepPost(t, granted.WHEP, granted.Token, fakeFP); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("a used, expired grant: %d, want 401 or 403", code)
	}
	if code := whepPost(t, other.WHEP, other.Token[:len(other.Token)-4]+"AAAA", fakeFP); code != http.StatusUnauthorized {
		t.Fatalf("forged grant: %d, want 401", code)
	}
	if code := whepPost(t, other.WHEP, "", fakeFP); code != http.StatusUnauthorized {
		t.Fatalf("no grant: %d, want 401", code)
	}
	if got := f.liveMetric(t, "camvault_live_views_open"); got != "0" {
		t.Fatalf("%s views open after the refusals", got)
	}
	if got := f.liveMetric(t, "camvault_live_views_refused_total"); got != "8" {
		t.Fatalf("%s refusals counted, want 8", got)
	}
	pub, waited = <-published, true
	if pub.FramesSent == 0 {
		t.Fatalf("publisher: %+v", pub)
	}
	// Once the camera stopped, its incident cannot be watched.
	waitIncidentEnded(t, f.s, "phone1")
	if code, b := f.grant(t, f.olga, inc, reason, ""); code != http.StatusNotFound {
		t.Fatalf("grant for an ended incident: %d %s, want 404", code, b)
	}
	if n := len(f.auditOf(t, "live.view.ended")); n != 1 {
		t.Fatalf("%d views ended, want the one that was opened", n)
	}
}

// Without --live-view the grant endpoint does not exist for anyone.
func TestLiveViewOff(t *testing.T) {
	data, _ := setupData(t, "cam1")
	addUser(t, data, "olga", "operator")
	tok := strings.TrimSpace(mustCamvault(t, "user", "token", "olga", "--data", data))
	s := newServer(t, data)
	code, b, _ := apiCall(t, tok, "POST", fmt.Sprintf("http://127.0.0.1:%d/api/v1/incidents/any/live", s.httpPort), `{"reason":"x"}`)
	if code != http.StatusNotFound || !strings.Contains(string(b), "--live-view") {
		t.Fatalf("live view off: %d %s, want 404", code, b)
	}
	res, err := http.Post(s.whipURL("cam1")[:strings.Index(s.whipURL("cam1"), "/whip/")]+"/whep/cam1", "application/sdp", strings.NewReader("v=0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("WHEP on a node without --live-view: %d", res.StatusCode)
	}
}
