package e2e

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// faceClip is an H.264/AAC MP4 of pigo's sample photograph of people
// (from the module cache), still for seconds, with a tone.
func faceClip(t *testing.T, seconds int) *clip {
	t.Helper()
	requireTool(t, "ffmpeg")
	gomod := strings.TrimSpace(string(runCmd(t, "go", "env", "GOMODCACHE")))
	photo := filepath.Join(gomod, "github.com", "esimov", "pigo@v1.4.6", "testdata", "sample.jpg")
	if _, err := os.Stat(photo); err != nil {
		t.Fatalf("pigo's sample photograph (go mod download github.com/esimov/pigo@v1.4.6): %v", err)
	}
	dir := t.TempDir()
	c := &clip{MP4: filepath.Join(dir, "faces.mp4"), AnnexB: filepath.Join(dir, "faces.h264"), Seconds: float64(seconds), Frames: seconds * 30}
	runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-loop", "1", "-framerate", "30", "-i", photo,
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", fmt.Sprint(seconds), "-vf", "scale=640:800,format=yuv420p", "-c:v", "libx264", "-preset", "veryfast",
		"-g", "60", "-bf", "0", "-c:a", "aac", "-b:a", "64k", "-f", "mp4", c.MP4)
	runCmd(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", c.MP4, "-map", "0:v", "-c", "copy",
		"-bsf:v", "h264_mp4toannexb", "-f", "h264", c.AnnexB)
	return c
}

// dirWatch records every file created or changed under its directories
// while it runs, polling (inotify would miss nothing either, but a poll
// is what every platform has).
type dirWatch struct {
	dirs []string
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	seen map[string]time.Time
	new  map[string]bool
}

func watchDirs(dirs ...string) *dirWatch {
	w := &dirWatch{dirs: dirs, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]time.Time{}, new: map[string]bool{}}
	w.scan(true)
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				w.scan(false)
				return
			case <-time.After(20 * time.Millisecond):
				w.scan(false)
			}
		}
	}()
	return w
}

func (w *dirWatch) scan(first bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			fi, err := e.Info()
			if err != nil {
				return nil
			}
			if old, ok := w.seen[p]; !first && (!ok || !old.Equal(fi.ModTime())) {
				w.new[p] = true
			}
			w.seen[p] = fi.ModTime()
			return nil
		})
	}
}

// changed stops the watch and lists what was created or changed.
func (w *dirWatch) changed() []string {
	close(w.stop)
	<-w.done
	var out []string
	for p := range w.new {
		out = append(out, p)
	}
	return out
}

// isAnchor reports whether a path is a signed audit head or manifest
// checkpoint anchored in the chunk store (public, not footage; the server
// anchors them on its own schedule).
func isAnchor(p string) bool {
	p = filepath.ToSlash(p)
	return strings.Contains(p, "audit/heads/") || strings.Contains(p, "/checkpoints/") || strings.HasPrefix(p, "checkpoints/")
}

// hashTree is the SHA-256 of every sealed file under dir (the anchored
// audit heads, which the server adds every minute, aside), by path.
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || isAnchor(p) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[p] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRedactionWorkflow: a clip of people streamed over RTSP; a reviewer
// finds the faces (at least the ones in the photograph); an admin requests
// a copy blurring every track and muting the first second, which the same
// admin cannot approve and a second admin does; it renders and downloads
// as a tar whose report verifies with `camvault verify` (and a changed
// report fails); the face regions are blurred in the output; the sealed
// originals are byte for byte as before, and while detecting and
// rendering nothing was written in the data directory or the server's
// temporary directory but the catalog's own files.
func TestRedactionWorkflow(t *testing.T) {
	c := faceClip(t, 6)
	data, secrets := setupData(t, "cam1")
	for _, u := range []struct{ name, role string }{{"rita", "reviewer"}, {"ann", "admin"}, {"ben", "admin"}} {
		addUser(t, data, u.name, u.role)
	}
	tok := map[string]string{}
	for _, u := range []string{"rita", "ann", "ben"} {
		tok[u] = strings.TrimSpace(mustCamvault(t, "user", "token", u, "--data", data))
	}
	tmp := t.TempDir()
	s := &server{t: t, data: data, env: []string{"TMPDIR=" + tmp}}
	s.rtspPort, s.httpPort, s.metricsPort, s.whipPort, s.icePort = freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	s.rtp, s.rtcp = evenPortPair(t)
	s.start()
	t.Cleanup(func() { s.stop() })
	if err := publishFFmpeg(t, c, s.rtspURL("cam1", secrets["cam1"], "cam1"), "tcp"); err != nil {
		t.Fatalf("publish: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1", s.httpPort)
	originals := hashTree(t, filepath.Join(data, "chunks"))
	watch := watchDirs(data, tmp)

	code, body, _ := apiCall(t, tok["rita"], "POST", api+"/incidents/"+inc.ID+"/detect", `{"reason":"SAR-2026-11: what was filmed of the requester"}`)
	if code != http.StatusOK {
		t.Fatalf("detect: %d %s\n%s", code, body, s.logs())
	}
	var det struct {
		Session string
		Tracks  []struct {
			ID         int
			Detections []json.RawMessage
			Thumb      []byte
		}
	}
	if err := json.Unmarshal(body, &det); err != nil {
		t.Fatal(err)
	}
	// The photograph shows one person, counted by hand: the face is found
	// and followed as a track, with a JPEG thumbnail.
	if len(det.Tracks) < 1 {
		t.Fatalf("detected %d tracks, want at least 1 (the photograph shows one face)", len(det.Tracks))
	}
	var tracks []map[string]any
	var edits []map[string]any
	for _, tr := range det.Tracks {
		if len(tr.Thumb) < 3 || tr.Thumb[0] != 0xFF || tr.Thumb[1] != 0xD8 || len(tr.Detections) == 0 {
			t.Fatalf("track %d: %d detections, thumbnail of %d bytes (not a JPEG)", tr.ID, len(tr.Detections), len(tr.Thumb))
		}
		tracks = append(tracks, map[string]any{"ID": tr.ID, "Detections": tr.Detections})
		edits = append(edits, map[string]any{"Kind": "track", "Track": tr.ID, "Keep": false, "Reason": "a bystander"})
	}
	edits = append(edits, map[string]any{"Kind": "mute", "From": 0, "To": int64(time.Second), "Reason": "a third party's name"})
	plan, _ := json.Marshal(map[string]any{"session": det.Session, "plan": map[string]any{"From": 0, "To": 0, "Tracks": tracks, "Edits": edits}})
	req, _ := json.Marshal(map[string]any{"reason": "subject access request", "reference": "SAR-2026-11", "plan": json.RawMessage(plan)})

	code, body, _ = apiCall(t, tok["ann"], "POST", api+"/incidents/"+inc.ID+"/redactions", string(req))
	if code != http.StatusCreated {
		t.Fatalf("request: %d %s", code, body)
	}
	var x struct{ ID, State string }
	json.Unmarshal(body, &x)
	if code, body, _ := apiCall(t, tok["rita"], "POST", api+"/redactions/"+x.ID+"/approve", ""); code != http.StatusForbidden {
		t.Fatalf("a reviewer approved: %d %s", code, body)
	}
	if code, body, _ := apiCall(t, tok["ann"], "POST", api+"/redactions/"+x.ID+"/approve", ""); code != http.StatusForbidden || !strings.Contains(string(body), "second admin") {
		t.Fatalf("the requester approved: %d %s", code, body)
	}
	if code, body, _ := apiCall(t, tok["ben"], "POST", api+"/redactions/"+x.ID+"/approve", ""); code != http.StatusAccepted {
		t.Fatalf("the second admin's approval: %d %s", code, body)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for x.State != "ready" {
		if x.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("redaction %s: %s\n%s", x.ID, body, tail(s.logs(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
		_, body, _ = apiCall(t, tok["ann"], "GET", api+"/redactions/"+x.ID, "")
		json.Unmarshal(body, &x)
	}
	changed := watch.changed()
	for _, p := range changed {
		rel, _ := filepath.Rel(data, p)
		if strings.HasPrefix(filepath.Base(p), "catalog.db") && !strings.Contains(rel, string(filepath.Separator)) {
			continue // the catalog: requests and audit records
		}
		if isAnchor(rel) {
			continue // the audit trail's signed heads, anchored every minute
		}
		t.Errorf("written during detection or rendering: %s", p)
	}

	// The bundle: a tar, audited as downloaded.
	code, body, hdr := apiCall(t, tok["ann"], "GET", api+"/redactions/"+x.ID+"/bundle", "")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("bundle: %d %.200s", code, body)
	}
	out := t.TempDir()
	tr := tar.NewReader(strings.NewReader(string(body)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		os.WriteFile(filepath.Join(out, filepath.Base(h.Name)), b, 0o600)
	}
	if o, e, code := camvault(t, "verify", out, "--data", data); code != 0 || !strings.Contains(o, "OK") {
		t.Fatalf("verify the redacted bundle: exit %d\n%s%s", code, o, e)
	}
	assertBlurred(t, c.MP4, filepath.Join(out, "redacted.mp4"), filepath.Join(out, "redaction.json"))

	report := filepath.Join(out, "redaction.json")
	raw, _ := os.ReadFile(report)
	os.WriteFile(report, []byte(strings.Replace(string(raw), `"reference":"SAR-2026-11"`, `"reference":"SAR-2026-12"`, 1)), 0o600)
	if o, e, code := camvault(t, "verify", out, "--data", data); code != 1 || !strings.Contains(o, "FAIL") {
		t.Fatalf("verify a changed report: exit %d, want 1\n%s%s", code, o, e)
	}

	// The same from a shell: request with a plan file, the requester's
	// approval refused, a second admin's accepted, rendered and checked.
	planFile := filepath.Join(t.TempDir(), "plan.json")
	os.WriteFile(planFile, plan, 0o600)
	if _, e, code := camvault(t, "redact", "request", inc.ID, "--plan", planFile, "--reason", "subject access request", "--data", data, "--by", "ann"); code != 2 || !strings.Contains(e, "--reference") {
		t.Fatalf("redact request without a reference: exit %d %s", code, e)
	}
	id := strings.TrimSpace(mustCamvault(t, "redact", "request", inc.ID, "--plan", planFile, "--reason", "subject access request",
		"--reference", "SAR-2026-12", "--data", data, "--by", "ann"))
	if _, e, code := camvault(t, "redact", "approve", id, "--data", data, "--by", "ann"); code == 0 || !strings.Contains(e, "second admin") {
		t.Fatalf("redact approve by the requester: exit %d %s", code, e)
	}
	mustCamvault(t, "redact", "approve", id, "--data", data, "--by", "ben")
	if _, e, code := camvault(t, "redact", "download", id, "--identity", identityPath(data), "--out", filepath.Join(data, "x"), "--data", data); code == 0 || !strings.Contains(e, "inside the data directory") {
		t.Fatalf("redact download into the data directory: exit %d %s", code, e)
	}
	cliOut := filepath.Join(t.TempDir(), "cli")
	mustCamvault(t, "redact", "download", id, "--identity", identityPath(data), "--out", cliOut, "--data", data, "--by", "ben")
	if o, e, code := camvault(t, "verify", cliOut, "--data", data); code != 0 {
		t.Fatalf("verify the CLI's redacted bundle: exit %d\n%s%s", code, o, e)
	}
	if list := mustCamvault(t, "redact", "list", "--data", data); !strings.Contains(list, id) || !strings.Contains(list, "ready") {
		t.Fatalf("redact list:\n%s", list)
	}

	after := hashTree(t, filepath.Join(data, "chunks"))
	for p := range after {
		if _, ok := originals[p]; !ok {
			t.Errorf("a sealed file appeared: %s", p)
		}
	}
	for p, h := range originals {
		if after[p] != h {
			t.Fatalf("sealed %s changed", p)
		}
	}
	audit := mustCamvault(t, "audit", "--data", data)
	for _, want := range []string{`"redaction.detected"`, `"redaction.requested"`, `"redaction.approved"`, `"redaction.ready"`, `"redaction.downloaded"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit trail lacks %s", want)
		}
	}
}

// assertBlurred checks, one second in, that every blurred track's box has
// lost at least 90 % of its detail (the variance of the Laplacian).
func assertBlurred(t *testing.T, orig, redacted, reportPath string) {
	t.Helper()
	var rep struct {
		Tracks []struct {
			Decision string
			Boxes    []struct {
				AtNS       int64 `json:"at_ns"`
				X, Y, W, H float64
			}
		}
	}
	b, _ := os.ReadFile(reportPath)
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	const w, h = 640, 800
	a, r := grayFrame(t, orig, "2.5", w, h), grayFrame(t, redacted, "2.5", w, h)
	for i, tr := range rep.Tracks {
		if tr.Decision != "blur" || len(tr.Boxes) == 0 {
			t.Fatalf("track %d: %+v, want blurred", i, tr)
		}
		bx := tr.Boxes[len(tr.Boxes)/2]
		x0, y0, x1, y1 := int(bx.X*w), int(bx.Y*h), int((bx.X+bx.W)*w), int((bx.Y+bx.H)*h)
		va, vr := lapVar(a, w, x0, y0, x1, y1), lapVar(r, w, x0, y0, x1, y1)
		if va == 0 || vr > 0.1*va {
			t.Errorf("track %d box %v: variance of the Laplacian %.1f in the original, %.1f redacted; want a drop of 90 %%", i, bx, va, vr)
		}
	}
}

func grayFrame(t *testing.T, file, at string, w, h int) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-ss", at, "-i", file, "-frames:v", "1",
		"-vf", fmt.Sprintf("scale=%d:%d", w, h), "-pix_fmt", "gray", "-f", "rawvideo", "-").Output()
	if err != nil || len(out) != w*h {
		t.Fatalf("decode %s at %s: %d bytes, %v", file, at, len(out), err)
	}
	return out
}

func lapVar(p []byte, stride, x0, y0, x1, y1 int) float64 {
	var sum, sum2, n float64
	for y := y0 + 1; y < y1-1; y++ {
		for x := x0 + 1; x < x1-1; x++ {
			l := 4*float64(p[y*stride+x]) - float64(p[y*stride+x-1]) - float64(p[y*stride+x+1]) - float64(p[(y-1)*stride+x]) - float64(p[(y+1)*stride+x])
			sum, sum2, n = sum+l, sum2+l*l, n+1
		}
	}
	if n == 0 {
		return 0
	}
	m := sum / n
	return sum2/n - m*m
}
