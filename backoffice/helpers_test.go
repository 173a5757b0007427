package backoffice_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"camvault/backoffice"
	"camvault/camera"
	"camvault/catalog"
	"camvault/internal/testenv"
	"camvault/keys"
	"camvault/server"
)

const (
	camID     = "cam1"
	tokAlice  = "alice-operator-token-0123456789"
	tokBob    = "bob-auditor-token-0123456789"
	tokCarol  = "carol-operator-token-0123456789"
	hookToken = "webhook-secret-0123456789abcdef"
)

// testTokens are the API tokens every test node accepts.
func testTokens(t testing.TB) *backoffice.Tokens {
	t.Helper()
	tk, err := backoffice.ParseTokens(strings.NewReader("alice operator " + tokAlice + "\nbob auditor " + tokBob +
		"\ncarol operator " + tokCarol + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// node is an in-process camvault server.
type node struct {
	srv    *server.Server
	data   string
	rtsp   string // host:port
	secret string // cam1's secret
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNode opens and starts a server on data (creating keys and cam1 on
// first use; secret is cam1's secret from an earlier start, or "").
func startNode(t testing.TB, data, secret string, cfg backoffice.Config) *node {
	t.Helper()
	n := &node{data: data, secret: secret, rtsp: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	if cfg.Auth == nil {
		cfg.Auth = testTokens(t)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.Open(server.Config{DataDir: data, RTSPAddress: n.rtsp, HTTPAddress: "127.0.0.1:0",
		WHIPAddress: "127.0.0.1:0", ICEUDPAddress: "127.0.0.1:0", SweepEvery: -1, Alerts: cfg}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	n.srv = srv
	t.Cleanup(func() { n.close(t) })
	if secret == "" {
		n.secret = n.addCamera(t, camID, "officer one")
	}
	return n
}

// addCamera registers a camera and returns its secret.
func (n *node) addCamera(t testing.TB, id, officer string) string {
	t.Helper()
	pepper, err := keys.LoadPepper(keys.Dir(n.data))
	if err != nil {
		t.Fatal(err)
	}
	secret, err := camera.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.srv.Catalog.AddCamera(context.Background(), catalog.Camera{ID: id, Officer: officer,
		SecretMAC: camera.SecretMAC(pepper, secret), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (n *node) close(t testing.TB) {
	if n.srv != nil {
		if err := n.srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		n.srv = nil
	}
}

func (n *node) base() string      { return "http://" + n.srv.HTTPAddr() }
func (n *node) eventsURL() string { return n.base() + "/api/v1/events" }

// postEvent posts a camera event to the ingest listener, as a camera does.
func (n *node) postEvent(t testing.TB, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.srv.WHIP.Addr()+"/cameras/"+camID+"/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+n.secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("post event %s: %s %s", body, resp.Status, b)
	}
}

// outbox returns everything in the catalog's outbox.
func (n *node) outbox(t testing.TB) []catalog.Alert {
	t.Helper()
	all, err := n.srv.Catalog.AlertsAfter(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// clip is a short H.264 test pattern split into access units.
type clip struct {
	sps, pps []byte
	aus      [][][]byte
}

var (
	clipOnce sync.Once
	theClip  *clip
	clipErr  error
)

// testClip encodes 1 s of 320x240 video (keyframe every 15 pictures, no
// B-frames, like a bodycam) with the ffmpeg CLI, once per test binary.
func testClip(t testing.TB) *clip {
	t.Helper()
	ffmpeg := testenv.Require(t, "ffmpeg")[0]
	clipOnce.Do(func() {
		cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
			"-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-bf", "0", "-pix_fmt", "yuv420p", "-f", "h264", "-")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			clipErr = fmt.Errorf("encode clip: %v: %s", err, errb.String())
			return
		}
		var nalus h264.AnnexB
		if err := nalus.Unmarshal(out.Bytes()); err != nil {
			clipErr = err
			return
		}
		c := &clip{}
		var au [][]byte
		for _, n := range nalus {
			typ := h264.NALUType(n[0] & 0x1f)
			switch typ {
			case h264.NALUTypeSPS:
				c.sps = n
			case h264.NALUTypePPS:
				c.pps = n
			case h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeSEI:
				continue
			}
			au = append(au, n)
			if typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR {
				c.aus = append(c.aus, au)
				au = nil
			}
		}
		if len(c.aus) == 0 || c.sps == nil || c.pps == nil {
			clipErr = fmt.Errorf("clip: no pictures")
			return
		}
		theClip = c
	})
	if clipErr != nil {
		t.Fatal(clipErr)
	}
	return theClip
}

// publish streams the clip's first frames pictures over RTSP/TCP in real
// time with gortsplib's client, then tears down. It returns when the
// first keyframe was handed to the socket.
func (n *node) publish(t testing.TB, c *clip, frames int) (firstKeyframe time.Time) {
	t.Helper()
	return n.publishAs(t, camID, n.secret, c, frames)
}

// publishAs is publish as another camera.
func (n *node) publishAs(t testing.TB, cam, secret string, c *clip, frames int) (firstKeyframe time.Time) {
	t.Helper()
	f := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: c.sps, PPS: c.pps}
	medi := &description.Media{Type: description.MediaTypeVideo, Formats: []format.Format{f}}
	tcp := gortsplib.TransportTCP
	cl := &gortsplib.Client{Transport: &tcp}
	if err := cl.StartRecording(fmt.Sprintf("rtsp://%s:%s@%s/%s", cam, secret, n.rtsp, cam),
		&description.Session{Medias: []*description.Media{medi}}); err != nil {
		t.Fatalf("rtsp publish: %v", err)
	}
	defer cl.Close()
	enc, err := f.CreateEncoder()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < frames; i++ {
		au := c.aus[i%len(c.aus)]
		at := start.Add(time.Duration(i) * time.Second / 30)
		time.Sleep(time.Until(at))
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstKeyframe = time.Now()
		}
		for _, p := range pkts {
			p.Timestamp = uint32(i * 3000)
			if err := cl.WritePacketRTP(medi, p); err != nil {
				t.Fatalf("rtsp write: %v", err)
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // let the client's write queue drain before TEARDOWN
	return firstKeyframe
}

// sseEvent is one event as a client parsed it off the wire.
type sseEvent struct {
	Type, Data string
	ID         int64
	At         time.Time // when the client read it
}

// sseClient reads /api/v1/events.
type sseClient struct {
	resp   *http.Response
	events chan sseEvent
	mu     sync.Mutex
	pings  int
	done   chan struct{}
	err    error
}

// dialSSE connects with token (and Last-Event-ID when lastID != "") and
// returns once the stream is live, or the refusal's status.
func dialSSE(t testing.TB, url, token, lastID string) (*sseClient, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 10000), done: make(chan struct{})}
	live := make(chan struct{})
	go c.read(live)
	select {
	case <-live:
	case <-c.done:
		t.Fatalf("stream ended before its first frame: %v", c.err)
	case <-time.After(10 * time.Second):
		t.Fatal("no first frame")
	}
	t.Cleanup(c.close)
	return c, http.StatusOK
}

func (c *sseClient) read(live chan struct{}) {
	defer close(c.done)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev sseEvent
	first := true
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if first {
				first = false
				close(live)
			}
			if ev.Type != "" || ev.Data != "" {
				ev.At = time.Now()
				c.events <- ev
			}
			ev = sseEvent{}
		case line == ": ping":
			c.mu.Lock()
			c.pings++
			c.mu.Unlock()
		case strings.HasPrefix(line, "event: "):
			ev.Type = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.ID, _ = strconv.ParseInt(line[len("id: "):], 10, 64)
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[len("data: "):]
		}
	}
	c.err = sc.Err()
}

func (c *sseClient) close() { c.resp.Body.Close(); <-c.done }

func (c *sseClient) pingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pings
}

// next returns the next event, failing after d.
func (c *sseClient) next(t testing.TB, d time.Duration) sseEvent {
	t.Helper()
	select {
	case ev := <-c.events:
		return ev
	case <-c.done:
		select {
		case ev := <-c.events:
			return ev
		default:
		}
		t.Fatalf("stream ended: %v", c.err)
	case <-time.After(d):
		t.Fatalf("no event within %s", d)
	}
	return sseEvent{}
}

// none fails if an event arrives within d.
func (c *sseClient) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case ev := <-c.events:
		t.Fatalf("unexpected event %s id %d", ev.Type, ev.ID)
	case <-time.After(d):
	}
}

// until returns events up to and including the first of type typ.
func (c *sseClient) until(t testing.TB, typ string, d time.Duration) []sseEvent {
	t.Helper()
	deadline := time.Now().Add(d)
	var out []sseEvent
	for {
		ev := c.next(t, time.Until(deadline))
		out = append(out, ev)
		if ev.Type == typ {
			return out
		}
	}
}

// hookReceiver is a webhook receiver that records what it accepted.
type hookReceiver struct {
	mu       sync.Mutex
	status   int // answer; 0 means 204
	got      []hookDelivery
	attempts int
}

type hookDelivery struct {
	Event, Delivery, Signature string
	Body                       []byte
	At                         time.Time
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attempts++
	if h.status != 0 {
		w.WriteHeader(h.status)
		return
	}
	h.got = append(h.got, hookDelivery{Event: r.Header.Get(backoffice.HeaderEvent), Delivery: r.Header.Get(backoffice.HeaderDelivery),
		Signature: r.Header.Get(backoffice.HeaderSignature), Body: body, At: time.Now()})
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) setStatus(code int) {
	h.mu.Lock()
	h.status = code
	h.mu.Unlock()
}

func (h *hookReceiver) deliveries() []hookDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookDelivery(nil), h.got...)
}

// waitFor polls cond every 20 ms until it holds, failing after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dataDir(t testing.TB) string { return filepath.Join(t.TempDir(), "data") }
