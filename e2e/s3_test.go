package e2e

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"

	"camvault/internal/s3test"
)

// TestS3Store: the whole flow on an S3 server with Object Lock: the self-test
// passes, chunks are stored locked, export and verify work, and nothing is
// left under the data directory but the catalog and keys.
func TestS3Store(t *testing.T) {
	c := testClip(t, 5)
	s, secrets, _, s3flags := newS3Server(t, s3test.Start(t), "cam1")
	data := s.data
	if !strings.Contains(s.logs(), "self-test passed") {
		t.Fatalf("no self-test at start:\n%s", s.logs())
	}
	cam := newRTSPCamera(t, c, false)
	cam.aus = cam.aus[:90]
	if err := cam.run(s.rtspURL("cam1", secrets["cam1"], "cam1"), gortsplib.TransportTCP); err != nil {
		t.Fatal(err)
	}
	inc := waitIncidentEnded(t, s, "cam1")
	if _, err := os.Stat(filepath.Join(data, "chunks")); err == nil {
		t.Fatal("chunks written to the local disk with --store s3")
	}
	out := filepath.Join(t.TempDir(), "export")
	mustCamvault(t, append([]string{"export", inc.ID, "--identity", identityPath(data), "--out", out, "--data", data}, s3flags...)...)
	if n := len(framemd5(t, filepath.Join(out, "incident.mp4"))); n != 90 {
		t.Fatalf("export from S3: %d frames", n)
	}
	mustCamvault(t, append([]string{"verify", inc.ID, "--identity", identityPath(data), "--data", data}, s3flags...)...)
	// Not due yet: the sweeper deletes nothing, and the server would refuse anyway.
	if out := mustCamvault(t, append([]string{"retention", "sweep", "--data", data}, s3flags...)...); !strings.Contains(out, `"chunks": 0`) {
		t.Fatalf("sweep: %s", out)
	}
}

// newS3Server serves with --store s3 on a new bucket of g, for cameras;
// it returns the server, the cameras' secrets, the bucket and the flags
// that name the store to the other commands.
func newS3Server(t *testing.T, g *s3test.Gateway, cameras ...string) (*server, map[string]string, string, []string) {
	t.Helper()
	data, secrets := setupData(t, cameras...)
	t.Setenv("CAMVAULT_S3_SECRET_KEY", s3test.SecretKey)
	bucket := fmt.Sprintf("evidence-e2e-%d", time.Now().UnixNano()%1e9)
	s3flags := []string{"--store", "s3", "--s3-endpoint", g.Endpoint, "--s3-bucket", bucket, "--s3-access-key", s3test.AccessKey}
	return newServer(t, data, append(s3flags, "--s3-create-bucket")...), secrets, bucket, s3flags
}

// TestS3NotEnforcedRefusesStart: an endpoint that accepts Object Lock
// headers but enforces nothing is refused before any stream is accepted.
func TestS3NotEnforcedRefusesStart(t *testing.T) {
	fake := httptest.NewServer(s3test.NonEnforcing())
	defer fake.Close()
	data, _ := setupData(t)
	cmd := exec.Command(camvaultBin, "serve", "--data", data, "--no-demo", "--rtsp", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--rtsp-rtp", "", "--rtsp-rtcp", "", "--http", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--store", "s3", "--s3-endpoint", strings.TrimPrefix(fake.URL, "http://"), "--s3-bucket", "evidence", "--s3-access-key", "a")
	cmd.Env = append(os.Environ(), "CAMVAULT_S3_SECRET_KEY=b")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not enforce Object Lock") || strings.Contains(string(out), "\nready") {
		t.Fatalf("serve against a non-enforcing S3: %v\n%s", err, out)
	}
}
