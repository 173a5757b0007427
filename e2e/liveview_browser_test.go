package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestLiveViewInBrowser drives the Live page's live view in headless
// Chromium while an RTSP camera (the ffmpeg CLI) records: a reviewer,
// without live.view, is offered no "watch"; an operator clicks watch on
// the incident list, types a reason, and the player in the page decodes
// frames within seconds, with her name and the time drawn over the
// picture and a countdown to the grant's end that goes down; the
// officer's assist request shows at the top of the page, marked urgent;
// at the grant's limit the node ends the view and the player says so;
// the audit trail has the view opened with the reason typed and ended.
func TestLiveViewInBrowser(t *testing.T) {
	chromium := requireTool(t, "chromium")
	const limit = 12 * time.Second
	f := newLiveFixture(t, []string{"cam1"}, "--live-view-max", limit.String())
	ffmpegLiveCamera(t, f.s.rtspURL("cam1", f.secrets["cam1"], "cam1"), 50, false)
	inc := f.openIncident(t, "cam1")
	base := fmt.Sprintf("http://127.0.0.1:%d", f.s.httpPort)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000), chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"))
	defer cancelAlloc()
	root, cancelRoot := chromedp.NewContext(alloc)
	defer cancelRoot()
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	open := func(who string) *browser {
		bctx, bcancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(bcancel)
		return &browser{t: t, ctx: bctx, who: who, base: base, shot: artifactDir(t)}
	}
	row := `document.querySelector('#incidents tr[data-incident="` + inc + `"]')`

	// The reviewer sees the recording incident but is offered no watch,
	// and her page has no player: the server left both out.
	rev := open("rita")
	rev.login(staffPassword)
	rev.waitJS("the incident in the list", row+` !== null`, 15*time.Second)
	if eval[bool](rev, `document.querySelector("button.watch-live") !== null || document.querySelector("#live-viewer") !== null ||
		document.querySelector("#incidents").dataset.live === "true"`) {
		t.Fatal("a reviewer, without live.view, is offered the live view")
	}

	op := open("olga")
	op.login(staffPassword)
	op.waitJS("watch offered on the recording incident", row+` !== null && `+row+`.querySelector("button.watch-live") !== null`, 15*time.Second)
	const reason = "officer asked for support at the station entrance"
	op.do("click watch, give a reason",
		chromedp.Click(chromedp.CSS(`#incidents tr[data-incident="`+inc+`"] button.watch-live`)),
		chromedp.WaitVisible(chromedp.CSS(`#live-form textarea[name="reason"]`)),
		chromedp.SendKeys(chromedp.CSS(`#live-form textarea[name="reason"]`), reason),
		chromedp.Click(chromedp.CSS(`#live-form button[type="submit"]`)))
	clicked := time.Now()
	for decoded := false; !decoded; {
		decoded = eval[bool](op, `(() => { const v = document.querySelector("#live-player");
			return v.srcObject !== null && v.getVideoPlaybackQuality().totalVideoFrames > 0 && v.videoWidth > 0; })()`)
		if !decoded && time.Since(clicked) > 10*time.Second {
			op.screenshot("failed-olga")
			t.Fatalf("no frame decoded 10 s after the click: %s\nserver: %s", eval[string](op, `(async () => {
				if (typeof live === "undefined" || !live) return "no view: " + document.querySelector("#live-error").textContent;
				const out = [live.pc.connectionState, live.pc.iceConnectionState];
				(await live.pc.getStats()).forEach(s => { if (s.type === "inbound-rtp" || s.type === "candidate-pair" && s.nominated) out.push(JSON.stringify(s)); });
				return out.join(" "); })()`), tail(f.s.logs(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("first frame decoded %v after the click", time.Since(clicked).Round(10*time.Millisecond))
	op.screenshot("liveview-1-playing")

	// Over the picture: who watches, and the time, which goes on.
	overlay := func() (who, clock, countdown string) {
		v := eval[[]string](op, `[document.querySelector("#live-who").textContent, document.querySelector("#live-clock").textContent,
			document.querySelector("#live-countdown").textContent]`)
		return v[0], v[1], v[2]
	}
	over := eval[bool](op, `(() => { const v = document.querySelector("#live-player").getBoundingClientRect(),
		o = document.querySelector(".live-overlay").getBoundingClientRect();
		return o.width > 0 && o.left >= v.left && o.right <= v.right && o.top >= v.top && o.bottom <= v.bottom; })()`)
	if !over {
		t.Fatal("the viewer's name and the time are not drawn over the video")
	}
	left := regexp.MustCompile(`^ends in (\d+) m (\d+) s$`)
	secs := func(countdown string) int {
		m := left.FindStringSubmatch(countdown)
		if m == nil {
			t.Fatalf("countdown %q, want \"ends in 0 m 9 s\"", countdown)
		}
		mi, _ := strconv.Atoi(m[1])
		s, _ := strconv.Atoi(m[2])
		return mi*60 + s
	}
	who, clock1, count1 := overlay()
	if who != "olga" {
		t.Fatalf("overlay names %q, want the viewer olga", who)
	}
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$`)
	if !stamp.MatchString(clock1) {
		t.Fatalf("overlay time %q", clock1)
	}
	if s := secs(count1); s <= 0 || s > int(limit.Seconds()) {
		t.Fatalf("countdown %q with a %v grant", count1, limit)
	}
	time.Sleep(2100 * time.Millisecond)
	_, clock2, count2 := overlay()
	if clock2 == clock1 || secs(count2) >= secs(count1) {
		t.Fatalf("over 2 s the time went %q → %q and the countdown %q → %q: neither may stand still", clock1, clock2, count1, count2)
	}

	// The officer asks for assistance: urgent, at the top of the page.
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/cameras/cam1/events", f.s.whipPort), strings.NewReader(`{"type":"assist"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+f.secrets["cam1"])
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("assist event: %v %v", res, err)
	}
	res.Body.Close()
	op.waitJS("the assist request at the top, urgent", `(() => { const a = document.querySelector("#assist");
		const first = document.querySelector("main").firstElementChild;
		return a !== null && !a.hidden && a === first && a.classList.contains("urgent") &&
			a.querySelector('#assist-list li a[href="/incidents/`+inc+`"]') !== null; })()`, 10*time.Second)
	op.screenshot("liveview-2-assist")

	// At the grant's limit the node ends the view; the player says so.
	op.waitJS("the player says the view ended", `document.querySelector("#live-viewer").dataset.state === "ended" &&
		!document.querySelector("#live-ended").hidden && /time limit/.test(document.querySelector("#live-ended").textContent)`,
		time.Until(clicked.Add(limit+8*time.Second)))
	t.Logf("the player said the view ended %v after the click (grant of %v)", time.Since(clicked).Round(10*time.Millisecond), limit)
	op.screenshot("liveview-3-ended")

	opened := f.auditOf(t, "live.view.opened")
	if len(opened) != 1 {
		t.Fatalf("%d live.view.opened records, want 1", len(opened))
	}
	d, _ := opened[0]["details"].(map[string]any)
	if opened[0]["actor"] != "olga" || opened[0]["incident"] != inc || d["reason"] != reason || d["bound"] != true {
		t.Fatalf("opened record %v, want olga's view of %s with the reason typed, bound to the page's connection", opened[0], inc)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.auditOf(t, "live.view.ended")) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	ended := f.auditOf(t, "live.view.ended")
	if len(ended) != 1 {
		t.Fatalf("%d live.view.ended records, want 1", len(ended))
	}
	ed, _ := ended[0]["details"].(map[string]any)
	if ended[0]["actor"] != "olga" || ed["grant"] != d["grant"] || !strings.Contains(fmt.Sprint(ed["why"]), "time limit") {
		t.Fatalf("ended record %v, want olga's view ended by its time limit", ended[0])
	}
}
