package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
)

// TestReconnectContinuesIncident: a camera that reconnects within the
// grace window continues its incident; the manifest records the gap and
// the export holds both parts.
func TestReconnectContinuesIncident(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	url := s.rtspURL("cam1", secrets["cam1"], "cam1")
	for i := 0; i < 2; i++ {
		cam := newRTSPCamera(t, c, false)
		cam.aus = cam.aus[:90]
		if err := cam.run(url, gortsplib.TransportTCP); err != nil {
			t.Fatal(err)
		}
		waitIncidentEnded(t, s, "cam1")
	}
	rows := incidents(t, data)
	if len(rows) != 1 {
		t.Fatalf("%d incidents, want the reconnect to continue one", len(rows))
	}
	out := filepath.Join(t.TempDir(), "export")
	files := strings.Fields(mustCamvault(t, "export", rows[0].ID, "--identity", identityPath(data), "--out", out, "--data", data))
	if len(files) != 2 {
		t.Fatalf("export files %v, want one per session", files)
	}
	for _, f := range files {
		if n := len(framemd5(t, f)); n != 90 {
			t.Fatalf("%s: %d frames, want 90", f, n)
		}
	}
	m, _ := os.ReadFile(filepath.Join(out, "manifest.jsonl"))
	if !strings.Contains(string(m), `"kind":"gap"`) || !strings.Contains(string(m), "reconnect after") {
		t.Fatalf("manifest has no reconnect gap:\n%s", m)
	}
}

// TestSecondPublisher: a second client is refused while the camera's
// session is live; once that session is stale (connected but silent), the
// camera re-authenticating takes over and the incident continues.
func TestSecondPublisher(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	s := newServer(t, data)
	url := s.rtspURL("cam1", secrets["cam1"], "cam1")

	first := newRTSPCamera(t, c, false)
	first.aus = first.aus[:60]
	first.hold = make(chan struct{})
	defer close(first.hold)
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.run(url, gortsplib.TransportTCP) }()

	time.Sleep(800 * time.Millisecond) // live: frames are flowing
	probe := newRTSPCamera(t, c, false)
	cl := &gortsplib.Client{}
	err := cl.StartRecording(url, probe.desc())
	cl.Close()
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("second publisher while live: %v, want 503", err)
	}

	time.Sleep(5 * time.Second) // first camera now silent: stale
	second := newRTSPCamera(t, c, false)
	second.aus = second.aus[:60]
	if err := second.run(url, gortsplib.TransportTCP); err != nil {
		t.Fatalf("takeover of a stale session: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if rows := incidents(t, data); len(rows) != 1 {
		t.Fatalf("%d incidents after takeover, want 1", len(rows))
	}
	out := filepath.Join(t.TempDir(), "export")
	files := strings.Fields(mustCamvault(t, "export", inc.ID, "--identity", identityPath(data), "--out", out, "--data", data))
	if len(files) != 2 {
		t.Fatalf("export files %v, want both sessions", files)
	}
	m, _ := os.ReadFile(filepath.Join(out, "manifest.jsonl"))
	if !strings.Contains(string(m), "replaced") {
		t.Fatalf("manifest does not record the takeover:\n%s", m)
	}
}

// TestTLSEveryListener: with --tls-cert, the camera secret travels inside
// TLS over RTSPS, the WHIP and camera-event listener and the backoffice
// answer HTTPS only, and the staff session cookie is marked Secure.
func TestTLSEveryListener(t *testing.T) {
	c := testClip(t, 5)
	data, secrets := setupData(t, "cam1")
	cert, key := selfSigned(t)
	s := newServer(t, data, "--tls-cert", cert, "--tls-key", key, "--rtsp-rtp", "", "--rtsp-rtcp", "")
	cam := newRTSPCamera(t, c, false)
	cam.aus = cam.aus[:60]
	cam.tls = true
	url := strings.Replace(s.rtspURL("cam1", secrets["cam1"], "cam1"), "rtsp://", "rtsps://", 1)
	if err := cam.run(url, gortsplib.TransportTCP); err != nil {
		t.Fatalf("publish over RTSPS: %v\n%s", err, s.logs())
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if inc.Chunks < 2 {
		t.Fatalf("%d chunks over RTSPS", inc.Chunks)
	}

	addUser(t, data, "olga", "operator")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d/api/v1/login", s.httpPort), "application/json",
		strings.NewReader(`{"name":"olga","password":"`+staffPassword+`"}`))
	if err != nil {
		t.Fatalf("backoffice over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure || !resp.Cookies()[0].HttpOnly {
		t.Fatalf("login over HTTPS: %s, cookies %v: want one Secure, HttpOnly session cookie", resp.Status, resp.Cookies())
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("https://127.0.0.1:%d/cameras/cam1/events", s.whipPort), strings.NewReader(`{"type":"warning","n":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+secrets["cam1"])
	if resp, err = hc.Do(req); err != nil {
		t.Fatalf("camera event over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("camera event over HTTPS: %s", resp.Status)
	}
	for _, port := range []int{s.httpPort, s.whipPort} {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("port %d answers plain HTTP: %s", port, resp.Status)
			}
		}
	}
}

func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}
