package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
)

func TestCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	rec := mustCamvault(t, "keygen", "--data", data)
	if !strings.HasPrefix(rec, "age1pq1") {
		t.Fatalf("keygen printed %q, want the hybrid recipient", rec)
	}
	idBefore, _ := os.ReadFile(identityPath(data))
	if _, e, code := camvault(t, "keygen", "--data", data); code == 0 || !strings.Contains(e, "exist") {
		t.Fatalf("second keygen: exit %d %s", code, e)
	}
	if idAfter, _ := os.ReadFile(identityPath(data)); string(idAfter) != string(idBefore) {
		t.Fatal("keygen overwrote the identity")
	}
	for _, f := range []string{"backoffice.identity", "node.key", "pepper"} {
		if st, err := os.Stat(filepath.Join(data, "keys", f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v %v", f, st.Mode().Perm(), err)
		}
	}
	// Flags after the positional argument; the secret alone on stdout.
	secret := mustCamvault(t, "camera", "add", "cam1", "--officer", "A. Officer", "--data", data)
	if s := strings.TrimSpace(secret); len(s) != 32 || strings.ContainsAny(s, " \n") {
		t.Fatalf("camera add printed %q", secret)
	}
	if _, _, code := camvault(t, "--data", data, "camera", "add", "cam1", "--officer", "B"); code == 0 {
		t.Fatal("duplicate camera accepted")
	}
	// The catalog stores no secret.
	db, _ := os.ReadFile(filepath.Join(data, "catalog.db"))
	wal, _ := os.ReadFile(filepath.Join(data, "catalog.db-wal"))
	if strings.Contains(string(db)+string(wal), strings.TrimSpace(secret)) {
		t.Fatal("camera secret stored in the catalog")
	}
	for _, args := range [][]string{
		{}, {"nosuch"}, {"camera", "add", "Bad/Id", "--officer", "x", "--data", data}, {"camera", "add", "cam2", "--data", data},
		{"export", "x", "--data", data}, {"verify", "--data", data}, {"verify", "inc-nope", "--data", data}, {"incidents", "--bogus"},
	} {
		if _, _, code := camvault(t, args...); code != 2 {
			t.Errorf("camvault %v: exit %d, want 2 (usage)", args, code)
		}
	}
	if out := mustCamvault(t, "incidents", "--json", "--data", data); strings.TrimSpace(out) != "[]" {
		t.Fatalf("incidents of an empty catalog: %q", out)
	}
}

// TestSilentStreamTimesOut: a camera that stays connected but sends
// nothing ends as interrupted after the read timeout; its footage stays.
func TestSilentStreamTimesOut(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	cam := newRTSPCamera(t, c, false)
	cam.aus = cam.aus[:75]
	cam.hold = make(chan struct{})
	go cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP)
	defer close(cam.hold)
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Status != "interrupted" {
		t.Fatalf("status %q, want interrupted", inc.Status)
	}
	if out, e, code := camvault(t, "verify", inc.ID, "--data", data, "--identity", identityPath(data)); code != 0 {
		t.Fatalf("verify: %s%s", out, e)
	}
	// Metrics show the pipeline's work (on the metrics listener: the
	// backoffice listener's /metrics needs a token).
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`camvault_pipeline_items_total{stage="commit"}`, `camvault_pipeline_latency_seconds_bucket{stage="seal"`,
		"camvault_ingest_to_durable_seconds_count", `camvault_pipeline_queue_depth{stage="store"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	_ = time.Second
}

// TestRevokeAndRotate: a revoked camera is refused from its next
// connection; a rotated secret replaces the old one.
func TestRevokeAndRotate(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	url := func(secret string) string { return s.rtspURL("cam1", secret, "cam1") }
	publish := func(secret string) error {
		cam := newRTSPCamera(t, c, false)
		cam.aus = cam.aus[:15]
		return cam.run(url(secret), gortsplib.TransportTCP)
	}
	mustCamvault(t, "camera", "revoke", "cam1", "--data", data)
	if err := publish(secrets["cam1"]); err == nil {
		t.Fatal("revoked camera accepted")
	}
	newSecret := strings.TrimSpace(mustCamvault(t, "camera", "rotate", "cam1", "--data", data))
	if newSecret == secrets["cam1"] || len(newSecret) != 32 {
		t.Fatalf("rotated secret %q", newSecret)
	}
	if err := publish(secrets["cam1"]); err == nil {
		t.Fatal("old secret accepted after rotation")
	}
	if err := publish(newSecret); err != nil {
		t.Fatalf("new secret refused: %v", err)
	}
	if _, _, code := camvault(t, "camera", "revoke", "nosuch", "--data", data); code == 0 {
		t.Fatal("revoking an unknown camera succeeded")
	}
}

// TestSimulate: `camvault simulate` registers cameras, posts their two
// warnings, sends a pre-event burst and publishes over RTSP or WebRTC,
// dropping the connection once and coming back (the incident continues);
// every frame it reports sent is durable, and the backoffice's outbox has
// both warnings before each incident.started.
func TestSimulate(t *testing.T) {
	requireTool(t, "ffmpeg")
	for _, proto := range []string{"rtsp", "whip"} {
		t.Run(proto, func(t *testing.T) {
			data, _ := setupData(t)
			s := newServer(t, data)
			target := []string{"--rtsp", fmt.Sprintf("127.0.0.1:%d", s.rtspPort)}
			if proto == "whip" {
				target = []string{"--whip", strings.TrimSuffix(s.whipURL(""), "/")}
			}
			out := mustCamvault(t, append([]string{"simulate", "--data", data, "--cameras", "3", "--duration", "4s", "--bitrate", "1M",
				"--pre-event", "4s", "--reconnects", "1", "--warnings", fmt.Sprintf("http://127.0.0.1:%d", s.whipPort)}, target...)...)
			var res []struct {
				Camera string `json:"camera"`
				Frames int64  `json:"frames"`
				Bytes  int64  `json:"bytes"`
				SHA256 string `json:"sha256"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 3 {
				t.Fatalf("simulate output: %v\n%s", err, out)
			}
			for _, r := range res {
				if r.Bytes < r.Frames*1000 || len(r.SHA256) != 64 {
					t.Fatalf("%s reports %d bytes, hash %q for %d pictures", r.Camera, r.Bytes, r.SHA256, r.Frames)
				}
			}
			sent := map[string]int64{}
			for _, r := range res {
				sent[r.Camera] = r.Frames
			}
			for _, cam := range []string{"sim0", "sim1", "sim2"} {
				if inc := waitIncidentEnded(t, s, cam); inc.Status != "closed" {
					t.Fatalf("%s: incident %s, want closed by the last connection's teardown", cam, inc.Status)
				}
			}
			var rows []struct {
				Camera  string `json:"camera"`
				Samples int64  `json:"samples"`
			}
			json.Unmarshal([]byte(mustCamvault(t, "incidents", "--json", "--data", data)), &rows)
			if len(rows) != 3 {
				t.Fatalf("%d incidents, want 3", len(rows))
			}
			for _, r := range rows {
				if sent[r.Camera] < 30*8 || r.Samples != sent[r.Camera] {
					t.Fatalf("%s: sent %d frames (4 s pre-event + 4 s live), %d durable", r.Camera, sent[r.Camera], r.Samples)
				}
			}
			var alerts []struct {
				Type   string         `json:"type"`
				Camera string         `json:"camera"`
				Data   map[string]any `json:"data"`
			}
			if err := json.Unmarshal([]byte(mustCamvault(t, "alerts", "--json", "--data", data)), &alerts); err != nil {
				t.Fatal(err)
			}
			seen := map[string]string{}
			for _, a := range alerts {
				switch a.Type {
				case "camera.warning":
					seen[a.Camera] += fmt.Sprintf("w%v ", a.Data["n"])
				case "incident.started":
					seen[a.Camera] += "started "
				}
			}
			for _, cam := range []string{"sim0", "sim1", "sim2"} {
				if seen[cam] != "w1 w2 started " {
					t.Fatalf("%s: outbox has %q, want both warnings then incident.started", cam, seen[cam])
				}
			}
		})
	}
}
