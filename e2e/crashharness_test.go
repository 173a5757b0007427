package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"

	"camvault/format/manifest"
	"camvault/internal/failpoint"
)

// crashSegment is the segment duration the harness's server cuts at
// (server.start's --segment): the most a kill may cost a stream beyond
// the time its camera was really disconnected.
const crashSegment = 2 * time.Second

// crashSlack is what the loss bound allows beyond the segment being cut:
// the few frames in the pipeline between the segmenter's cut and the
// commit, and the clock steps between the test's observation of the kill
// and the server's.
const crashSlack = 500 * time.Millisecond

// A killPoint is one crash the harness inflicts: at a random moment from
// the test (failpoint empty), or by a failpoint of the crashtest build in
// serve or in a sweep.
type killPoint struct {
	failpoint string // CAMVAULT_CRASH_AT for the process; empty: a random SIGKILL of serve
	sweep     bool   // the failpoint is in a `camvault retention sweep`, serve runs on
	export    string // the old incident to export in this run (its bundle is written then)
}

// liveCamera is one camera of the harness: it streams the clip over and
// over, reconnecting whenever the server goes, and remembers when each
// stream was accepted.
type liveCamera struct {
	id, secret string
	mu         sync.Mutex
	accepted   []time.Time
}

func (c *liveCamera) run(t *testing.T, cl *clip, url func(id, secret string) string, stop chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		cam := newRTSPCamera(t, cl, false)
		cam.stop = stop
		cam.started = func() {
			c.mu.Lock()
			c.accepted = append(c.accepted, time.Now())
			c.mu.Unlock()
		}
		if err := cam.run(url(c.id, c.secret), gortsplib.TransportTCP); err != nil {
			time.Sleep(100 * time.Millisecond) // the server is down: dial again soon
		}
	}
}

// acceptedAfter is when the camera's stream was first accepted after t.
func (c *liveCamera) acceptedAfter(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.accepted {
		if a.After(t) {
			return a, true
		}
	}
	return time.Time{}, false
}

// TestCrashHarness (issue 13): serve, recording three cameras, is killed
// with SIGKILL at 20 points: at random moments, and at every failpoint of
// the crashtest build (after a put before its commit; during a checkpoint,
// before and after its anchor; between a re-anchored checkpoint and its
// mark; midway through an export's media and before its outcome is
// recorded) and, in `camvault retention sweep` beside it, after a chunk's
// delete and after an incident's shred. After every restart the catalog
// and the store agree (no object without a row or intent, no row without
// its object, no intent left from before the kill), and for every stream
// the media lost around the kill, beyond the time its camera was really
// disconnected, is at most the segment being cut. Exports interrupted by
// a kill are resumed and verify; sweeps interrupted are finished by the
// next. At the end every incident verifies, and a sweep past every
// deadline leaves no footage object and no anchor in the store.
func TestCrashHarness(t *testing.T) {
	started := time.Now()
	go crashtestBinary() // built meanwhile; the first restart runs it
	cl := testClip(t, 7)
	cams := []string{"cam1", "cam2", "cam3"}
	data, secrets := setupData(t, append([]string{"old1", "old2"}, cams...)...)
	addUser(t, data, "ann", "admin")
	addUser(t, data, "ben", "admin")
	tokens := map[string]string{}
	for _, u := range []string{"ann", "ben"} {
		tokens[u] = strings.TrimSpace(mustCamvault(t, "user", "token", u, "--data", data))
	}
	// The production build records the first footage; every restart runs
	// the crashtest build.
	s := &server{t: t, data: data}
	s.rtspPort = freePort(t)
	s.rtp, s.rtcp = evenPortPair(t)
	s.httpPort, s.metricsPort, s.whipPort, s.icePort = freePort(t), freePort(t), freePort(t), freePort(t)
	s.start()
	t.Cleanup(func() { s.stop() })

	// Two short incidents, ended, to export and to sweep while the
	// cameras record: their deadlines come before any of the cameras'.
	var wg sync.WaitGroup
	for _, id := range []string{"old1", "old2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := newRTSPCamera(t, cl, false)
			pub.aus = pub.aus[:90]
			if err := pub.run(s.rtspURL(id, secrets[id], id), gortsplib.TransportTCP); err != nil {
				t.Errorf("publish %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	old := map[string]string{}
	for _, id := range []string{"old1", "old2"} {
		old[id] = waitIncidentEnded(t, s, id).ID
	}
	time.Sleep(1500 * time.Millisecond)
	camsFrom := time.Now()
	// As of this, 28 days on, the old incidents are past their deadline
	// and nothing the cameras record is.
	sweepAt := camsFrom.Add(28*24*time.Hour - 500*time.Millisecond).UTC().Format(time.RFC3339Nano)

	stop := make(chan struct{})
	var camsDone sync.WaitGroup
	live := make([]*liveCamera, len(cams))
	for i, id := range cams {
		live[i] = &liveCamera{id: id, secret: secrets[id]}
		camsDone.Add(1)
		go live[i].run(t, cl, func(id, secret string) string { return s.rtspURL(id, secret, id) }, stop, &camsDone)
	}
	stopCams := sync.OnceFunc(func() { close(stop); camsDone.Wait() })
	t.Cleanup(stopCams)

	// The plan: 20 kill points, every failpoint at least once, each
	// serve failpoint followed by a random kill (its restart is the
	// recovery being checked, and resumes an interrupted export).
	plan := []killPoint{
		{}, {failpoint: "store.after-put:4"}, {},
		{failpoint: "commit.checkpoint-before-anchor:1"}, {},
		{failpoint: "evidence.export-media:1", export: old["old1"]}, {},
		{failpoint: "commit.checkpoint-after-anchor:2"}, {},
		{failpoint: "backoffice.export-before-finish:1", export: old["old2"]}, {},
		{failpoint: "commit.reanchor-before-mark:1"}, {},
		{failpoint: "retention.after-delete:3", sweep: true},
		{failpoint: "retention.after-shred:1", sweep: true}, {},
		{failpoint: "store.after-put:2"}, {}, {}, {},
	}
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1", s.httpPort)
	var kills []kill
	exports := map[string]string{} // export id → incident
	targeted := map[string]bool{}
	var orphans, rowsWithout int
	check := func(since time.Time, what string) {
		o, r := checkAgreement(t, data, since, what)
		orphans, rowsWithout = orphans+o, rowsWithout+r
	}
	fired := func(fp string) bool {
		return strings.Contains(s.logs(), "failpoint: SIGKILL at "+strings.Replace(fp, ":", " hit ", 1)+" ")
	}
	rng := rand.New(rand.NewPCG(uint64(started.UnixNano()), 13))
	since := camsFrom
	waitCamerasRecording(t, s, live, since)
	bin := buildCrashtest(t)
	s.bin = bin

	for i := 0; i < len(plan); i++ {
		kp := plan[i]
		// Serve is up (ready) here. Let every camera reconnect first,
		// unless a failpoint kills serve meanwhile; a random kill then
		// comes within a segment, so some land before any of the new
		// streams' chunks is durable.
		waitCamerasBack(t, s, live, since)
		switch {
		case kp.sweep:
			// The exports must be done before their incidents go.
			waitExportsReady(t, api, tokens["ann"], exports)
			o, e, code := camvaultEnv(t, bin, []string{failpoint.Env + "=" + kp.failpoint}, "retention", "sweep", "--now", sweepAt, "--data", data)
			if code != -1 || !strings.Contains(e, "failpoint: SIGKILL at "+strings.Replace(kp.failpoint, ":", " hit ", 1)+" ") {
				t.Fatalf("kill %d: the sweep did not die at %s: exit %d\n%s%s", i+1, kp.failpoint, code, o, e)
			}
			kills = append(kills, kill{at: time.Now(), point: kp.failpoint, sweep: true})
			targeted[fpName(kp.failpoint)] = true
			t.Logf("kill %d at %s (%s, in a sweep)", len(kills), kills[len(kills)-1].at.Format("15:04:05.000"), kp.failpoint)
			if i+1 < len(plan) && plan[i+1].sweep {
				continue // the next point is in the sweep that resumes this one
			}
			// The next sweep finishes what the killed ones left.
			if o, e, code := camvaultEnv(t, bin, nil, "retention", "sweep", "--now", sweepAt, "--data", data); code != 0 {
				t.Fatalf("kill %d: the sweep after %s: exit %d\n%s%s", i+1, kp.failpoint, code, o, e)
			}
			check(time.Now(), fmt.Sprintf("after the sweep killed at %s", kp.failpoint))
			for id, inc := range old {
				if left := filesUnder(filepath.Join(data, "chunks", inc)); len(left) != 0 {
					t.Errorf("left of the swept incident %s (%s) after the sweeps killed and resumed: %q", inc, id, left)
				}
			}
			continue
		case kp.failpoint == "":
			time.Sleep(time.Duration(rng.Int64N(int64(crashSegment))))
			s.cmd.Process.Signal(syscall.SIGKILL)
			<-s.exited
			kills = append(kills, kill{at: time.Now(), point: "random"})
		default:
			if kp.export != "" {
				exports[requestExport(t, api, tokens, kp.export)] = kp.export
			}
			select {
			case <-s.exited:
			case <-time.After(60 * time.Second):
				t.Fatalf("kill %d: failpoint %s not reached\n%s", i+1, kp.failpoint, tail(s.logs(), 4000))
			}
			if !fired(kp.failpoint) {
				t.Fatalf("kill %d: serve exited (%v) without failpoint %s\n%s", i+1, s.exitErr, kp.failpoint, tail(s.logs(), 4000))
			}
			kills = append(kills, kill{at: time.Now(), point: kp.failpoint})
			targeted[fpName(kp.failpoint)] = true
		}
		t.Logf("kill %d at %s (%s)", len(kills), kills[len(kills)-1].at.Format("15:04:05.000"), kills[len(kills)-1].point)

		// Restart, with the next point's failpoint when it is serve's: one
		// that fires during the recovery (before "ready") is a kill too,
		// and the restart after it runs without one.
		s.env = nil
		if i+1 < len(plan) && plan[i+1].failpoint != "" && !plan[i+1].sweep {
			s.env = []string{failpoint.Env + "=" + plan[i+1].failpoint}
		}
		for !s.launch() {
			if s.env == nil || !fired(plan[i+1].failpoint) {
				t.Fatalf("kill %d: serve exited at its restart: %v\n%s", len(kills), s.exitErr, tail(s.logs(), 4000))
			}
			i++
			kills = append(kills, kill{at: time.Now(), point: plan[i].failpoint})
			targeted[fpName(plan[i].failpoint)] = true
			t.Logf("kill %d at %s (%s, during the recovery)", len(kills), kills[len(kills)-1].at.Format("15:04:05.000"), plan[i].failpoint)
			s.env = nil
		}
		since = kills[len(kills)-1].at
		check(since, fmt.Sprintf("after kill %d (%s)", len(kills), kills[len(kills)-1].point))
	}

	waitCamerasRecording(t, s, live, since)
	waitExportsReady(t, api, tokens["ann"], exports)
	stopCams()
	if err := s.stop(); err != nil {
		t.Fatalf("clean stop at the end: %v\n%s", err, tail(s.logs(), 4000))
	}
	// Exact agreement once nothing is in flight: every object a row, every
	// row an object, no intent pending.
	rows, intents, files, _ := storeState(t, data)
	if !slices.Equal(rows, files) || intents != 0 {
		t.Errorf("catalog and store disagree at the end:\nrows  %q\nfiles %q\nintents %d", rows, files, intents)
	}

	// The loss around every kill of serve, per stream.
	var serveKills []time.Time
	targetedKills := 0
	for _, k := range kills {
		if k.point != "random" {
			targetedKills++
		}
		if !k.sweep {
			serveKills = append(serveKills, k.at)
		}
	}
	var maxLoss time.Duration
	lossPer := map[string]time.Duration{}
	measured := 0
	for _, c := range live {
		for _, ct := range streamCuts(cameraChunks(t, data, c.id), serveKills, c) {
			measured++
			maxLoss, lossPer[c.id] = max(maxLoss, ct.loss), max(lossPer[c.id], ct.loss)
			if ct.loss > crashSegment+crashSlack {
				t.Errorf("%s lost %v of its stream to the kill at %s: more than the %v segment being cut",
					c.id, ct.loss.Round(time.Millisecond), ct.kill.Format("15:04:05.000"), crashSegment)
			}
		}
	}
	if measured < len(serveKills) {
		t.Errorf("the loss measured at only %d kills of %d cameras' streams", measured, len(cams))
	}

	// Every incident verifies, the swept ones are gone, the interrupted
	// exports were resumed and their bundles verify.
	incs := incidents(t, data)
	for _, in := range incs {
		if in.Status == "deleted" {
			continue
		}
		if o, e, code := camvault(t, "verify", in.ID, "--identity", identityPath(data), "--data", data); code != 0 {
			t.Errorf("verify %s: exit %d\n%s%s", in.ID, code, o, e)
		}
	}
	for _, in := range incs {
		if (in.ID == old["old1"] || in.ID == old["old2"]) && in.Status != "deleted" {
			t.Errorf("the swept incident %s is %s", in.ID, in.Status)
		}
	}
	exportDir := filepath.Join(filepath.Dir(data), "exports")
	for id := range exports {
		verifyBundle(t, data, filepath.Join(exportDir, id))
	}

	// Past every deadline nothing of the footage is left.
	sweep(t, data, "9600h")
	if rows, intents, files, anchors := storeState(t, data); len(rows) != 0 || intents != 0 || len(files) != 0 || anchors != 0 {
		t.Errorf("left after a sweep past every deadline: rows %q, intents %d, files %q, anchors %d", rows, intents, files, anchors)
	}
	for _, p := range plan {
		if p.failpoint != "" && !targeted[fpName(p.failpoint)] {
			t.Errorf("failpoint %s never reached", p.failpoint)
		}
	}
	for _, c := range cams {
		t.Logf("%s: max loss around a kill %.2f s", c, lossPer[c].Seconds())
	}
	t.Logf("crash harness: %d kill points (%d targeted, %d failpoints), orphans %d, rows without object %d, max loss per stream %.2f s (segment %v; %d stream cuts measured), %d incidents, %s",
		len(kills), targetedKills, len(targeted), orphans, rowsWithout, maxLoss.Seconds(), crashSegment, measured, len(incs), time.Since(started).Round(time.Second))
}

type kill struct {
	at    time.Time
	point string // the failpoint, or "random"
	sweep bool   // the process killed was a sweep, not serve
}

func fpName(fp string) string { name, _, _ := strings.Cut(fp, ":"); return name }

// camvaultEnv runs the crashtest binary bin with env added; a process
// killed by a signal has code -1.
func camvaultEnv(t *testing.T, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return out.String(), errb.String(), 0
}

// checkAgreement compares the catalog and the store while serve records:
// no object without a chunk row or an intent (the store listed first, so
// whatever it lists had its intent recorded by the time the catalog is
// read), no row without its object (the catalog read first), and no
// pending intent from before since (the restart reconciled them).
func checkAgreement(t *testing.T, data string, since time.Time, what string) (orphans, rowsWithout int) {
	t.Helper()
	// storeState reads the catalog, then lists the store; the catalog is
	// read again after the listing.
	rows, _, files, _ := storeState(t, data)
	known := catalogObjects(t, data)
	have := map[string]bool{}
	for _, f := range files {
		have[f] = true
		if !known[f] {
			orphans++
			t.Errorf("%s: object %s in the store, neither a row nor an intent in the catalog", what, f)
		}
	}
	for _, r := range rows {
		if !have[r] {
			rowsWithout++
			t.Errorf("%s: chunk row %s without its object", what, r)
		}
	}
	db := openCatalog(t, data)
	defer db.Close()
	var stale int
	if err := db.QueryRow(`SELECT count(*) FROM intents WHERE status = 'pending' AND created < ?`,
		since.UTC().Format(time.RFC3339Nano)).Scan(&stale); err != nil {
		t.Fatal(err)
	}
	if stale != 0 {
		t.Errorf("%s: %d pending intents from before the kill left after the restart", what, stale)
	}
	return orphans, rowsWithout
}

func openCatalog(t *testing.T, data string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db")+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// catalogObjects returns every object the catalog accounts for: live
// chunk rows and intents.
func catalogObjects(t *testing.T, data string) map[string]bool {
	t.Helper()
	db := openCatalog(t, data)
	defer db.Close()
	known := map[string]bool{}
	r, err := db.Query(`SELECT object FROM chunks WHERE deleted_at IS NULL UNION SELECT object FROM intents`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for r.Next() {
		var o string
		if err := r.Scan(&o); err != nil {
			t.Fatal(err)
		}
		known[o] = true
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return known
}

// filesUnder lists the files under dir (none when it is gone).
func filesUnder(dir string) []string {
	var files []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

// A span is a durable chunk of a camera's original track, on the wall
// clock.
type span struct{ from, to time.Time }

// cameraChunks reads the original-track chunks of every incident of the
// camera from the manifest, in wall-clock order.
func cameraChunks(t *testing.T, data, camera string) []span {
	t.Helper()
	db := openCatalog(t, data)
	r, err := db.Query(`SELECT id FROM incidents WHERE camera = ?`, camera)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for r.Next() {
		var id string
		if err := r.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	r.Close()
	db.Close()
	var spans []span
	for _, id := range ids {
		for _, rec := range manifestRecords(t, data, id) {
			if rec.Kind == manifest.KindChunk && rec.Track == "original" && rec.EndNS > rec.StartNS {
				spans = append(spans, span{rec.Wall, rec.Wall.Add(time.Duration(rec.EndNS - rec.StartNS))})
			}
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	return spans
}

// A cut is what one kill of serve cost a camera's stream: the stream
// time from the last durable point (the end of the last durable chunk,
// or the camera's return after the kill before) to the kill.
type cut struct {
	kill time.Time
	loss time.Duration
}

// streamCuts measures every kill that fell in a hole of a camera's
// stream, between the last durable chunk before it and the first after:
// the time from the hole's start, or from the camera's return after the
// previous kill in the hole, to the kill. A restart killed during its
// recovery never took the camera back: that kill costs nothing more.
// Kills with no chunk of the stream before them, or none after, are left
// out.
func streamCuts(spans []span, kills []time.Time, c *liveCamera) []cut {
	// Media time and the wall clock drift a little apart over a stream.
	const drift = 200 * time.Millisecond
	var cuts []cut
	for i := 1; i < len(spans); i++ {
		from, to := spans[i-1].to, spans[i].from
		streaming := from // since when the camera sent what no durable chunk holds
		for _, k := range kills {
			if k.Before(from.Add(-drift)) || !k.Before(to) {
				continue
			}
			cuts = append(cuts, cut{kill: k, loss: max(k.Sub(streaming), 0)})
			back, ok := c.acceptedAfter(k)
			if !ok {
				back = to
			}
			streaming = later(streaming, back)
		}
	}
	return cuts
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitCamerasBack waits until every camera's stream has been accepted
// after since, or serve exits (a failpoint).
func waitCamerasBack(t *testing.T, s *server, live []*liveCamera, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range live {
		for {
			if _, ok := c.acceptedAfter(since); ok {
				break
			}
			select {
			case <-s.exited:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not back after %s\n%s", c.id, since.Format("15:04:05.000"), tail(s.logs(), 4000))
			}
		}
	}
}

// waitCamerasRecording waits until every camera's stream, accepted after
// since, has a durable chunk, or serve exits (a failpoint).
func waitCamerasRecording(t *testing.T, s *server, live []*liveCamera, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for _, c := range live {
		for {
			select {
			case <-s.exited:
				return
			default:
			}
			if back, ok := c.acceptedAfter(since); ok {
				spans := cameraChunks(t, s.data, c.id)
				if len(spans) > 0 && spans[len(spans)-1].from.After(back.Add(-time.Second)) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s records nothing after %s\n%s", c.id, since.Format("15:04:05.000"), tail(s.logs(), 4000))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// requestExport has ann request an export of the incident and ben
// approve it: serve writes its bundle in the background.
func requestExport(t *testing.T, api string, tokens map[string]string, incident string) string {
	t.Helper()
	code, b, _ := apiCall(t, tokens["ann"], "POST", api+"/incidents/"+incident+"/exports", `{"reason":"crash test","reference":"PR-13"}`)
	var x struct {
		ID string `json:"id"`
	}
	if code != http.StatusCreated || json.Unmarshal(b, &x) != nil {
		t.Fatalf("request the export of %s: %d %s", incident, code, b)
	}
	if code, b, _ := apiCall(t, tokens["ben"], "POST", api+"/exports/"+x.ID+"/approve", ""); code != http.StatusAccepted {
		t.Fatalf("approve export %s: %d %s", x.ID, code, b)
	}
	return x.ID
}

// waitExportsReady waits until every export is ready (resumed after the
// kills that interrupted them).
func waitExportsReady(t *testing.T, api, token string, exports map[string]string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for id := range exports {
		for {
			code, b, _ := apiCall(t, token, "GET", api+"/exports/"+id, "")
			var x struct {
				State string `json:"state"`
				Error string `json:"error"`
			}
			json.Unmarshal(b, &x)
			if code == http.StatusOK && x.State == "ready" {
				break
			}
			if x.State == "failed" || time.Now().After(deadline) {
				t.Fatalf("export %s of %s: %d %s, want ready", id, exports[id], code, b)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// apiCall calls the backoffice API with a staff API token.
func apiCall(t testing.TB, token, method, url, body string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}
