package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const staffPassword = "a long enough password"

// addUser creates a staff account with `camvault user add`, the password
// on stdin.
func addUser(t testing.TB, data, name, role string) {
	t.Helper()
	cmd := exec.Command(camvaultBin, "user", "add", name, "--role", role, "--data", data, "--by", "e2e")
	cmd.Stdin = strings.NewReader(staffPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add %s: %v\n%s", name, err, out)
	}
}

// artifactDir is where screenshots go: $CAMVAULT_ARTIFACTS, else
// artifacts/e2e at the repository root.
func artifactDir(t testing.TB) string {
	dir := os.Getenv("CAMVAULT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts", "e2e")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// browser is one person's headless Chromium window, with its own cookies.
type browser struct {
	t    testing.TB
	ctx  context.Context
	who  string
	base string
	shot string
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.screenshot("failed-" + b.who)
		b.t.Fatalf("%s: %s: %v", b.who, what, err)
	}
}

// eval runs JavaScript in the page and decodes its result.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.who, js, err)
	}
	return v
}

// waitJS waits until the expression is true in the page. It polls from
// here rather than in the page, so a navigation on the way (a sign-in
// redirect) does not end the wait.
func (b *browser) waitJS(what, js string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	b.screenshot("failed-" + b.who)
	b.t.Fatalf("%s: %s (waited %v for %s): last error %v", b.who, what, d, js, last)
}

func (b *browser) screenshot(name string) {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.shot, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

func (b *browser) login(password string) {
	b.t.Helper()
	b.do("open the login page", chromedp.Navigate(b.base+"/"), chromedp.WaitVisible(chromedp.CSS(`#login input[name="name"]`)))
	b.do("sign in",
		chromedp.SendKeys(chromedp.CSS(`#login input[name="name"]`), b.who),
		chromedp.SendKeys(chromedp.CSS(`#login input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
	b.waitJS("land on the dashboard after signing in", `location.pathname === "/" && document.querySelector(".who") !== null`, 15*time.Second)
}

// TestDashboardInBrowser drives the backoffice in headless Chromium: an
// operator signed in sees a camera's two warnings and then
// incident.started appear in the live feed without a reload, while the
// camera publishes over RTSP with the ffmpeg CLI; a reviewer opens the
// incident while it is recorded, states a reason, and the video plays
// (its currentTime advances, a frame is drawn) and follows the recording
// past what existed when the view opened; an admin places a legal hold
// and the page shows it; one admin requests an export and another
// approves it; an auditor sees all of it in the audit trail. Screenshots
// go to artifacts/e2e.
func TestDashboardInBrowser(t *testing.T) {
	chromium := requireTool(t, "chromium")
	c := testClip(t, 12)
	data, secrets := setupData(t, "cam1")
	for name, role := range map[string]string{"olga": "operator", "rita": "reviewer", "adam": "admin", "bea": "admin", "aude": "auditor"} {
		addUser(t, data, name, role)
	}
	s := newServer(t, data)
	base := fmt.Sprintf("http://127.0.0.1:%d", s.httpPort)
	shots := artifactDir(t)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900), chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true))
	defer cancelAlloc()
	root, cancelRoot := chromedp.NewContext(alloc)
	defer cancelRoot()
	if err := chromedp.Do(root); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	open := func(who string) *browser {
		bctx, bcancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(bcancel)
		return &browser{t: t, ctx: bctx, who: who, base: base, shot: shots}
	}

	// The operator: signed in, the feed is live.
	op := open("olga")
	op.login(staffPassword)
	op.waitJS("the alert feed connects", `document.querySelector("#feed-state").textContent === "live"`, 15*time.Second)
	eval[bool](op, `window.camvaultNoReload = true`)

	post := func(body string) {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/cameras/cam1/events", s.whipPort), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secrets["cam1"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("camera event %s: %v %v", body, resp, err)
		}
		resp.Body.Close()
	}
	post(`{"type":"warning","n":1}`)
	op.waitJS("warning 1 in the feed", `[...document.querySelectorAll('#feed li[data-type="camera.warning"]')].some(li => li.textContent.includes("warning 1"))`, 10*time.Second)
	post(`{"type":"warning","n":2}`)
	op.waitJS("warning 2 in the feed", `[...document.querySelectorAll('#feed li[data-type="camera.warning"]')].some(li => li.textContent.includes("warning 2"))`, 10*time.Second)

	published := make(chan error, 1)
	go func() { published <- publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp") }()
	op.waitJS("incident.started in the feed", `document.querySelector('#feed li[data-type="incident.started"]') !== null`, 20*time.Second)
	op.waitJS("the incident in the list", `document.querySelector('#incidents tbody tr[data-incident]') !== null`, 10*time.Second)
	if !eval[bool](op, `window.camvaultNoReload === true`) {
		t.Fatal("the operator's page was reloaded")
	}
	order := eval[[]string](op, `[...document.querySelectorAll('#feed li')].reverse().map(li => li.dataset.type)`)
	if len(order) < 3 || order[0] != "camera.warning" || order[1] != "camera.warning" || order[2] != "incident.started" {
		t.Fatalf("feed order %v, want warning, warning, incident.started", order)
	}
	op.screenshot("1-operator-feed")

	incID := eval[string](op, `document.querySelector('#incidents tbody tr[data-incident]').dataset.incident`)

	// The reviewer opens the incident while it is still being recorded: a
	// reason is required, then the video plays, and goes on into the
	// segments recorded after the view was opened.
	rev := open("rita")
	rev.login(staffPassword)
	rev.do("open the incident", chromedp.Navigate(base+"/incidents/"+incID), chromedp.WaitVisible(chromedp.CSS("#watch")))
	if code := eval[int](rev, `fetch("/api/v1/incidents/`+incID+`/views", {method: "POST", headers: {"Content-Type": "application/json",
		"X-CSRF-Token": document.querySelector('meta[name="csrf"]').content}, body: JSON.stringify({reason: "  "})}).then(r => r.status)`); code != http.StatusBadRequest {
		t.Fatalf("footage without a reason: %d, want 400", code)
	}
	rev.do("state a reason and open the footage",
		chromedp.SendKeys(chromedp.CSS(`#watch textarea[name="reason"]`), "complaint 2026-118 about the arrest"),
		chromedp.Click(chromedp.CSS(`#watch button[type="submit"]`)))
	rev.waitJS("the video plays", `(() => { const v = document.querySelector("#player"); return !v.hidden && v.currentTime > 1; })()`, 45*time.Second)
	t1 := eval[float64](rev, `document.querySelector("#player").currentTime`)
	rev.waitJS("the video keeps playing", fmt.Sprintf(`document.querySelector("#player").currentTime > %f + 0.5`, t1), 15*time.Second)
	// A frame is drawn: the test pattern is anything but one flat colour.
	spread := eval[int](rev, `(() => {
		const v = document.querySelector("#player"), c = document.createElement("canvas");
		c.width = 64; c.height = 36;
		const g = c.getContext("2d"); g.drawImage(v, 0, 0, c.width, c.height);
		const d = g.getImageData(0, 0, c.width, c.height).data;
		let lo = 765, hi = 0;
		for (let i = 0; i < d.length; i += 4) { const s = d[i] + d[i+1] + d[i+2]; lo = Math.min(lo, s); hi = Math.max(hi, s); }
		return hi - lo; })()`)
	if spread < 100 {
		t.Fatalf("the drawn frame is flat (brightness spread %d): no picture", spread)
	}
	if w := eval[int](rev, `document.querySelector("#player").videoWidth`); w != 640 {
		t.Errorf("video width %d, want the 640 px review proxy", w)
	}
	rev.screenshot("2-reviewer-player")
	rev.waitJS("the player follows the recording", `(() => { const v = document.querySelector("#player");
		return Number(v.dataset.played) > Number(v.dataset.listed) && v.currentTime > 8; })()`, 45*time.Second)

	if err := <-published; err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.ID != incID {
		t.Fatalf("incident %s ended, the list showed %s", inc.ID, incID)
	}
	if n := eval[int](rev, `(async () => { const r = await fetch("/api/v1/incidents/`+inc.ID+`"); return (await r.json()).segments.length; })()`); n < 5 {
		t.Fatalf("the incident has %d segments, want at least 5 of 12 s", n)
	}

	// An operator sees the incident's metadata but no player, and the
	// footage API refuses them.
	op.do("open the incident as operator", chromedp.Navigate(base+"/incidents/"+inc.ID), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	if eval[bool](op, `document.querySelector("#watch") !== null`) {
		t.Fatal("the operator is offered footage")
	}
	if code := eval[int](op, `fetch("/api/v1/incidents/`+inc.ID+`/views", {method: "POST", headers: {"Content-Type": "application/json",
		"X-CSRF-Token": document.querySelector('meta[name="csrf"]').content}, body: JSON.stringify({reason: "curious"})}).then(r => r.status)`); code != http.StatusForbidden {
		t.Fatalf("operator opening footage: %d, want 403", code)
	}

	// The admin places a hold; the page shows it.
	adm := open("adam")
	adm.login(staffPassword)
	adm.do("open the incident", chromedp.Navigate(base+"/incidents/"+inc.ID), chromedp.WaitVisible(chromedp.CSS("#hold")))
	if eval[bool](adm, `document.querySelector("#watch") !== null`) {
		t.Fatal("the admin is offered footage")
	}
	adm.do("place a hold",
		chromedp.SendKeys(chromedp.CSS(`#hold input[name="reference"]`), "PR-2026-4471"),
		chromedp.SendKeys(chromedp.CSS(`#hold input[name="reason"]`), "police report on the arrest"),
		chromedp.Click(chromedp.CSS(`#hold button[type="submit"]`)))
	adm.waitJS("the hold badge", `document.querySelector("#hold-badge") !== null && document.querySelector("#release") !== null`, 15*time.Second)
	adm.screenshot("3-admin-hold")
	op.do("back to the dashboard", chromedp.Navigate(base+"/"))
	op.waitJS("the list shows the hold", `document.querySelector('#incidents tr[data-incident="`+inc.ID+`"] .badge.hold') !== null`, 10*time.Second)

	// The admin requests an export; they cannot approve it themselves; a
	// second admin approves, and the bundle is ready to download.
	adm.do("request an export",
		chromedp.SendKeys(chromedp.CSS(`#export input[name="reference"]`), "PR-2026-4471"),
		chromedp.SendKeys(chromedp.CSS(`#export input[name="reason"]`), "evidence for the prosecutor"),
		chromedp.Click(chromedp.CSS(`#export button[type="submit"]`)))
	adm.waitJS("the request is listed", `document.querySelector('#exports tr[data-state="requested"]') !== null`, 15*time.Second)
	if eval[bool](adm, `document.querySelector("#exports button.approve") !== null`) {
		t.Fatal("the requester is offered to approve their own export")
	}
	bea := open("bea")
	bea.login(staffPassword)
	bea.do("open the incident", chromedp.Navigate(base+"/incidents/"+inc.ID), chromedp.WaitVisible(chromedp.CSS("#exports")))
	bea.waitJS("the approve button", `document.querySelector("#exports button.approve") !== null`, 10*time.Second)
	bea.do("approve", chromedp.Click(chromedp.CSS(`#exports button.approve`)))
	bea.waitJS("the bundle is ready", `document.querySelector("#exports a.download") !== null`, 60*time.Second)
	bea.screenshot("4-admin-export-ready")
	bundle := eval[[]string](bea, `fetch(document.querySelector("#exports a.download").href).then(async r => [String(r.status),
		r.headers.get("Content-Type"), String((await r.arrayBuffer()).byteLength)])`)
	if len(bundle) != 3 || bundle[0] != "200" || bundle[1] != "application/x-tar" || len(bundle[2]) < 6 {
		t.Fatalf("bundle download: %v, want 200, a tar of at least 100 kB", bundle)
	}

	// The auditor sees the view with its reason and the hold, and nothing else.
	aud := open("aude")
	aud.login(staffPassword)
	aud.do("open the audit trail", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible(chromedp.CSS("#audit")))
	rows := eval[string](aud, `document.querySelector("#audit tbody").textContent`)
	for _, want := range []string{"footage.viewed", "complaint 2026-118", "hold.placed", "PR-2026-4471", "login.success",
		"export.requested", "export.approved", "export.ready", "export.downloaded"} {
		if !strings.Contains(rows, want) {
			t.Errorf("the audit page lacks %q", want)
		}
	}
	csv := eval[string](aud, `fetch("/api/v1/audit?format=csv").then(r => r.text())`)
	if !strings.HasPrefix(csv, "id,at,actor,action,incident,details,prev,hash\n") || !strings.Contains(csv, "footage.viewed") {
		t.Errorf("audit CSV:\n%s", tail(csv, 500))
	}
	aud.screenshot("5-auditor-trail")
	aud.do("try the incident page", chromedp.Navigate(base+"/incidents/"+inc.ID))
	if txt := eval[string](aud, `document.body.textContent`); !strings.Contains(txt, "Not allowed") {
		t.Errorf("an auditor opened an incident page: %s", tail(txt, 300))
	}
	if o, e, code := camvault(t, "audit", "verify", "--data", data); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, o, e)
	}
}
