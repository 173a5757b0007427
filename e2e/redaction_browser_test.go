package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestRedactionInBrowser drives the redaction view in headless Chromium:
// a reviewer opens an incident of people, watches the review proxy with
// the found track drawn over it, sees its thumbnail, decides to blur it
// (keep is offered too), adds a mute and requests the copy; a
// second person, an admin, approves it in the list; the copy is made and
// its bundle downloads.
func TestRedactionInBrowser(t *testing.T) {
	chromium := requireTool(t, "chromium")
	c := faceClip(t, 6)
	data, secrets := setupData(t, "cam1")
	addUser(t, data, "rita", "reviewer")
	addUser(t, data, "adam", "admin")
	s := newServer(t, data)
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	base := fmt.Sprintf("http://127.0.0.1:%d", s.httpPort)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1400), chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true))
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

	rev := open("rita")
	rev.login(staffPassword)
	rev.do("open the incident", chromedp.Navigate(base+"/incidents/"+inc.ID), chromedp.WaitVisible(chromedp.CSS("#detect")))
	rev.do("watch the review proxy",
		chromedp.SendKeys(chromedp.CSS(`#watch textarea[name="reason"]`), "SAR-2026-11: what was filmed of the requester"),
		chromedp.Click(chromedp.CSS(`#watch button[type="submit"]`)))
	rev.waitJS("the proxy plays", `document.querySelector("#player").currentTime > 0.5`, 45*time.Second)
	rev.do("find the faces",
		chromedp.SendKeys(chromedp.CSS(`#detect input[name="reason"]`), "SAR-2026-11"),
		chromedp.Click(chromedp.CSS(`#detect button[type="submit"]`)))
	rev.waitJS("the tracks, each with its thumbnail", `document.querySelectorAll("#tracks li img").length >= 1 &&
		[...document.querySelectorAll("#tracks li img")].every(i => i.complete && i.naturalWidth > 0)`, 3*time.Minute)
	// The tracks are drawn over the picture: red boxes on the overlay.
	rev.do("rewind", chromedp.Evaluate[chromedp.Void](`document.querySelector("#player").currentTime = 1`))
	rev.waitJS("a track drawn over the proxy", `(() => {
		const c = document.querySelector("#redact-overlay"); if (!c || !c.width) return false;
		const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
		for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] < 80 && d[i+3] > 0) return true;
		return false; })()`, 20*time.Second)
	rev.screenshot("redaction-1-tracks")
	// Choosing keep and back to blur rewrites the reason the page offers.
	rev.do("keep the person, then blur them after all",
		chromedp.SetValue(chromedp.CSS(`#tracks li:first-child select`), "keep"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#tracks li:first-child select").dispatchEvent(new Event("change"))`))
	if r := eval[string](rev, `document.querySelector("#tracks li:first-child input").value`); r != "the requester" {
		t.Fatalf("reason offered for a kept person: %q", r)
	}
	rev.do("blur the person, add a mute",
		chromedp.SetValue(chromedp.CSS(`#tracks li:first-child select`), "blur"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#tracks li:first-child select").dispatchEvent(new Event("change"))`),
		chromedp.SetValue(chromedp.CSS(`#redact-edit select[name="kind"]`), "mute"),
		chromedp.SetValue(chromedp.CSS(`#redact-edit input[name="from"]`), "0"),
		chromedp.SetValue(chromedp.CSS(`#redact-edit input[name="to"]`), "1"),
		chromedp.SendKeys(chromedp.CSS(`#redact-edit input[name="reason"]`), "a third party's name"),
		chromedp.Click(chromedp.CSS(`#redact-edit button[type="submit"]`)))
	rev.waitJS("the mute listed", `document.querySelector('#edits li[data-kind="mute"]') !== null`, 5*time.Second)
	rev.do("request the copy",
		chromedp.SendKeys(chromedp.CSS(`#redact-request input[name="reference"]`), "SAR-2026-11"),
		chromedp.SendKeys(chromedp.CSS(`#redact-request input[name="reason"]`), "subject access request"),
		chromedp.Click(chromedp.CSS(`#redact-request button[type="submit"]`)))
	rev.waitJS("the request listed", `document.querySelector('#redactions tr[data-state="requested"]') !== null`, 15*time.Second)
	if eval[bool](rev, `document.querySelector("#redactions button.approve") !== null`) {
		t.Fatal("the reviewer is offered the approval")
	}

	adm := open("adam")
	adm.login(staffPassword)
	adm.do("open the incident", chromedp.Navigate(base+"/incidents/"+inc.ID), chromedp.WaitVisible(chromedp.CSS("#redactions")))
	adm.waitJS("the approve button", `document.querySelector("#redactions button.approve") !== null`, 15*time.Second)
	adm.do("approve", chromedp.Click(chromedp.CSS(`#redactions button.approve`)))
	adm.waitJS("the copy made", `document.querySelector('#redactions tr[data-state="ready"] a.download') !== null`, 3*time.Minute)
	adm.screenshot("redaction-2-ready")
	size := eval[int](adm, `(async () => { const r = await fetch(document.querySelector('#redactions a.download').href);
		return r.ok && r.headers.get("Content-Type") === "application/x-tar" ? (await r.arrayBuffer()).byteLength : -r.status; })()`)
	if size < 10000 {
		t.Fatalf("the bundle download: %d", size)
	}
	audit := mustCamvault(t, "audit", "--data", data)
	for _, want := range []string{`"redaction.requested"`, `"redaction.approved"`, `"redaction.ready"`, `"redaction.downloaded"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit trail lacks %s", want)
		}
	}
}
