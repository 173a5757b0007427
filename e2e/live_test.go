package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
	_ "time/tzdata" // the viewer's zone below, whatever the machine has installed

	"github.com/chromedp/chromedp"
)

// viewerZone is the browser's time zone in TestDashboardLiveAfterIncident:
// not the machine's nor UTC, so a page that shows server or UTC times
// instead of the viewer's cannot pass; en-US names it EST/EDT.
const viewerZone = "America/New_York"

// TestDashboardLiveAfterIncident: an operator opening the Live page on a
// fresh node reads "No alerts yet"; after an incident has started and
// ended, opening it again lists its incident.started and incident.ended
// alerts at once (from the page, not only from what the stream sends
// later). Every date on the Live and incident pages is in the one format,
// in the viewer's zone with the zone named; the incident page says what
// its sample count is and when the footage is deleted.
func TestDashboardLiveAfterIncident(t *testing.T) {
	chromium := requireTool(t, "chromium")
	c := testClip(t, 6)
	data, secrets := setupData(t, "cam1")
	addUser(t, data, "olga", "operator")
	s := newServer(t, data)
	base := fmt.Sprintf("http://127.0.0.1:%d", s.httpPort)
	zone, err := time.LoadLocation(viewerZone)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900), chromedp.Env("TZ="+viewerZone, "LANG=en_US.UTF-8"), chromedp.Flag("lang", "en-US"),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true))
	defer cancelAlloc()
	bctx, cancelB := chromedp.NewContext(alloc)
	defer cancelB()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	op := &browser{t: t, ctx: bctx, who: "olga", base: base, shot: artifactDir(t)}
	if got := eval[string](op, `Intl.DateTimeFormat().resolvedOptions().timeZone`); got != viewerZone {
		t.Fatalf("the browser's zone is %q, want %q", got, viewerZone)
	}

	// shown checks that every <time> on the page shows its instant as
	// "2006-01-02 15:04:05 MST" in the viewer's zone.
	stamp := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (EST|EDT)$`)
	shown := func(where string, min int) {
		t.Helper()
		pairs := eval[[][]string](op, `[...document.querySelectorAll("time")].map(e => [e.getAttribute("datetime") || "", e.textContent])`)
		if len(pairs) < min {
			t.Fatalf("%s: %d dates shown, want at least %d", where, len(pairs), min)
		}
		for _, p := range pairs {
			at, err := time.Parse(time.RFC3339Nano, p[0])
			if err != nil {
				t.Fatalf("%s: a date %q without its instant (datetime %q)", where, p[1], p[0])
			}
			if want := at.In(zone).Format("2006-01-02 15:04:05 MST"); p[1] != want || !stamp.MatchString(p[1]) {
				t.Errorf("%s: %s shown as %q, want %q", where, p[0], p[1], want)
			}
		}
	}

	// A fresh node: nothing has happened, and the page says so.
	op.login(staffPassword)
	op.waitJS("the alert feed connects", `document.querySelector("#feed-state").textContent === "live"`, 15*time.Second)
	if txt := eval[string](op, `(() => { const e = document.querySelector("#feed-empty");
		return e && !e.hidden && e.offsetParent !== null ? e.textContent : ""; })()`); !regexp.MustCompile(`(?i)no alerts yet`).MatchString(txt) {
		t.Fatalf("fresh node: the empty state shows %q, want \"No alerts yet\"", txt)
	}
	if n := eval[int](op, `document.querySelectorAll("#feed li").length`); n != 0 {
		t.Fatalf("fresh node: %d alerts listed", n)
	}

	// An incident starts and ends while nobody has the page open.
	op.do("leave the Live page", chromedp.Navigate("about:blank"))
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")

	// Opening the Live page now shows what happened, before any live event.
	op.do("open the Live page", chromedp.Navigate(base+"/"))
	op.waitJS("incident.started listed on opening", `(() => { const li = document.querySelector('#feed li[data-type="incident.started"]');
		return li !== null && li.querySelector('a[href="/incidents/`+inc.ID+`"]') !== null; })()`, 5*time.Second)
	op.waitJS("incident.ended listed on opening", `document.querySelector('#feed li[data-type="incident.ended"]') !== null`, 5*time.Second)
	if eval[bool](op, `!document.querySelector("#feed-empty").hidden`) {
		t.Fatal("the empty state shows beside the alerts")
	}
	order := eval[[]string](op, `[...document.querySelectorAll('#feed li')].map(li => li.dataset.type)`)
	if len(order) != 2 || order[0] != "incident.ended" || order[1] != "incident.started" {
		t.Errorf("feed %v, want incident.ended above incident.started", order)
	}
	op.waitJS("the incident in the list", `document.querySelector('#incidents tr[data-incident="`+inc.ID+`"] time') !== null`, 10*time.Second)
	shown("Live page", 3) // two alerts and the incident's start
	op.screenshot("live-after-incident")

	// The incident page: the one date format, the count for what it is,
	// and the deadline as a countdown with its date.
	op.do("open the incident", chromedp.Navigate(base+"/incidents/"+inc.ID), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	shown("incident page", 3) // start, end, and a segment at least
	detail := eval[[]int](op, `fetch("/api/v1/incidents/`+inc.ID+`").then(r => r.json()).then(d => [d.segments.length, d.video_frames, d.audio_frames, d.samples])`)
	count := eval[string](op, `document.querySelector("#segment-count").textContent`)
	if want := fmt.Sprintf("%d segments, %d video frames, %d audio frames", detail[0], detail[1], detail[2]); count != want || detail[0] < 2 {
		t.Errorf("segment count %q, want %q (at least 2 segments)", count, want)
	}
	// The clip's every video frame, and its audio apart: the two add up
	// to the access units the manifest counts.
	if detail[1] != c.Frames || detail[2] <= 0 || detail[1]+detail[2] != detail[3] {
		t.Errorf("video frames %d (clip has %d), audio frames %d, access units %d", detail[1], c.Frames, detail[2], detail[3])
	}
	if label := eval[string](op, `document.querySelector("#deadline").closest("dd").previousElementSibling.textContent`); label != "Deleted in" {
		t.Errorf("the deadline is labelled %q, want \"Deleted in\"", label)
	}
	deadline := eval[string](op, `document.querySelector("#deadline").textContent`)
	m := regexp.MustCompile(`^(\d+) d (\d+) h \(on (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:EST|EDT))\)$`).FindStringSubmatch(deadline)
	if m == nil || inc.RetainUntil == nil {
		t.Fatalf("deadline %q (retain until %v), want \"27 d 23 h (on 2027-01-04 09:36:23 EST)\"", deadline, inc.RetainUntil)
	}
	if want := inc.RetainUntil.In(zone).Format("2006-01-02 15:04:05 MST"); m[3] != want {
		t.Errorf("deadline %q: the date, want %s", deadline, want)
	}
	days, _ := strconv.Atoi(m[1])
	hours, _ := strconv.Atoi(m[2])
	left := time.Until(*inc.RetainUntil)
	if got := time.Duration(days)*24*time.Hour + time.Duration(hours)*time.Hour; got > left || left-got > time.Hour+time.Minute {
		t.Errorf("deadline %q: the countdown, want %v left rounded down to the hour", deadline, left.Round(time.Minute))
	}
	op.screenshot("incident-dates-and-counts")
}
