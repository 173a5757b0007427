package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"

	"camvault/format/manifest"
	"camvault/internal/pgtest"
	"camvault/internal/s3test"
)

// TestTwoNodeFailover: two serve nodes share one PostgreSQL catalog and
// one S3 bucket. A camera records on node A, which is killed (SIGKILL);
// the camera reconnects to node B, which takes it over once A's lease has
// expired: one incident, A's session ended by the takeover, the reconnect
// gap, each session's sequence numbers whole, and the export verifies
// with both nodes' keys (and not with A's alone). A restarted while B
// records refuses the camera, naming B, and leaves B's session alone. A
// third node with an fs store is refused at start (exit 2).
func TestTwoNodeFailover(t *testing.T) {
	c := testClip(t, 8)
	dsn := pgtest.NewCatalog(t)
	g := s3test.Start(t)
	t.Setenv("CAMVAULT_S3_SECRET_KEY", s3test.SecretKey)
	bucket := fmt.Sprintf("evidence-failover-%d", time.Now().UnixNano()%1e9)
	s3flags := []string{"--store", "s3", "--s3-endpoint", g.Endpoint, "--s3-bucket", bucket, "--s3-access-key", s3test.AccessKey}
	dataA, dataB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	mustCamvault(t, "keygen", "--data", dataA)
	secret := strings.TrimSpace(mustCamvault(t, "camera", "add", "cam1", "--officer", "o", "--data", dataA, "--catalog", dsn))
	shareKeys(t, dataA, dataB)
	nodeFlags := func(id string, extra ...string) []string {
		return append(append([]string{"--catalog", dsn, "--node", id, "--lease", "3s", "--checkpoint-every", "2"}, s3flags...), extra...)
	}
	a := newServer(t, dataA, nodeFlags("node-a", "--s3-create-bucket")...)
	b := newServer(t, dataB, nodeFlags("node-b")...)
	incidentsOn := func() []incidentRow {
		var rows []incidentRow
		if err := json.Unmarshal([]byte(mustCamvault(t, "incidents", "--json", "--data", dataA, "--catalog", dsn)), &rows); err != nil {
			t.Fatal(err)
		}
		return rows
	}

	// On A until a checkpoint of A's is signed (after two chunks), then A dies.
	cam := newRTSPCamera(t, c, false)
	onA := make(chan error, 1)
	go func() { onA <- cam.run(a.rtspURL("cam1", secret, "cam1"), gortsplib.TransportTCP) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if rows := incidentsOn(); len(rows) == 1 && rows[0].Chunks >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A recorded no chunks\n%s", a.logs())
		}
	}
	a.cmd.Process.Kill()
	<-a.exited
	select {
	case <-onA:
	case <-time.After(15 * time.Second):
		t.Fatal("the camera did not notice node A's death")
	}

	// To B, retried while refused (A's lease still live). Once B
	// records, A comes back: the camera's second connection there is
	// refused, naming B.
	cam.aus = cam.aus[:150] // 5 s on B
	recording := make(chan struct{})
	cam.started = func() { close(recording) }
	onB := make(chan error, 1)
	go func() {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			err := cam.run(b.rtspURL("cam1", secret, "cam1"), gortsplib.TransportTCP)
			if err == nil || !strings.Contains(err.Error(), "503") || time.Now().After(deadline) {
				onB <- err
				return
			}
		}
	}()
	select {
	case <-recording:
	case err := <-onB:
		t.Fatalf("camera on node B: %v\n%s", err, b.logs())
	}
	a.start()
	var refusal error
	for deadline := time.Now().Add(10 * time.Second); refusal == nil && time.Now().Before(deadline); {
		// The first keyframe, not RECORD, opens B's session: until it
		// has, A sees no lease and would take the camera.
		time.Sleep(500 * time.Millisecond)
		again := newRTSPCamera(t, c, false)
		again.aus = again.aus[:30]
		refusal = again.run(a.rtspURL("cam1", secret, "cam1"), gortsplib.TransportTCP)
	}
	if refusal == nil || !strings.Contains(refusal.Error(), "503") || !strings.Contains(refusal.Error(), "node-b") {
		t.Fatalf("node A while B records the camera: %v; want 503 naming node-b\n%s", refusal, a.logs())
	}
	if err := <-onB; err != nil {
		t.Fatalf("camera on node B: %v\n%s", err, b.logs())
	}

	var inc incidentRow
	for deadline := time.Now().Add(20 * time.Second); inc.Status != "closed"; time.Sleep(200 * time.Millisecond) {
		rows := incidentsOn()
		if len(rows) != 1 {
			t.Fatalf("incidents %+v: want one", rows)
		}
		if inc = rows[0]; time.Now().After(deadline) {
			t.Fatalf("incident %+v not closed\n%s", inc, b.logs())
		}
	}
	bundle := filepath.Join(t.TempDir(), "export")
	export := append([]string{"export", inc.ID, "--identity", identityPath(dataA), "--out", bundle, "--data", dataA, "--catalog", dsn}, s3flags...)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		o, e, code := camvault(t, export...)
		if code == 0 {
			break
		}
		os.RemoveAll(bundle)
		if time.Now().After(deadline) {
			t.Fatalf("export: exit %d\n%s%s", code, o, e)
		}
	}
	checkFailoverChain(t, bundle)
	pubA, pubB := filepath.Join(dataA, "keys", "node.pub"), filepath.Join(dataB, "keys", "node.pub")
	if o, e, code := camvault(t, "verify", bundle, "--identity", identityPath(dataA), "--pubkey", pubA, "--pubkey", pubB); code != 0 || !strings.Contains(o, "result: OK") {
		t.Fatalf("verify with both nodes' keys: exit %d\n%s%s", code, o, e)
	}
	if o, _, code := camvault(t, "verify", bundle, "--pubkey", pubA); code != 1 {
		t.Fatalf("verify with node A's key alone: exit %d, want 1 (B's checkpoints)\n%s", code, o)
	}
	var listed map[string]string
	if b, err := os.ReadFile(filepath.Join(bundle, "node_keys.json")); err != nil || json.Unmarshal(b, &listed) != nil || listed["node-a"] == "" || listed["node-b"] == "" {
		t.Fatalf("bundle's node keys %v, %v: want node-a's and node-b's", listed, err)
	}

	// A third node on this catalog with the fs store is refused.
	dataC := filepath.Join(t.TempDir(), "c")
	shareKeys(t, dataA, dataC)
	_, e, code := camvault(t, "serve", "--data", dataC, "--catalog", dsn, "--node", "node-c", "--no-demo",
		"--rtsp", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--rtsp-rtp", "", "--http", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--whip", "-")
	if code != 2 || !strings.Contains(e, "s3 bucket "+bucket) {
		t.Fatalf("a node with the fs store on the shared catalog: exit %d\n%s; want 2 naming the catalog's store", code, e)
	}
}

// shareKeys gives the node at data the keys of the node at from (the same
// backoffice recipients and camera pepper) with a signing key of its own.
func shareKeys(t *testing.T, from, data string) {
	t.Helper()
	own := filepath.Join(t.TempDir(), "own")
	mustCamvault(t, "keygen", "--data", own)
	if err := os.MkdirAll(filepath.Join(data, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(from, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src := filepath.Join(from, "keys", e.Name())
		if e.Name() == "node.key" || e.Name() == "node.pub" {
			src = filepath.Join(own, "keys", e.Name())
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "keys", e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFailoverChain reads an exported manifest: two sessions, the first
// ended by node B's takeover, then a reconnect gap, then the second; each
// session's original chunks numbered 0, 1, 2... with no duplicate or hole.
func checkFailoverChain(t *testing.T, bundle string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var sessions []string
	next := map[string]uint64{}
	var shape []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r manifest.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		switch r.Kind {
		case manifest.KindSession:
			sessions = append(sessions, r.Session)
			shape = append(shape, "session")
		case manifest.KindChunk:
			if r.Track != "original" {
				continue
			}
			if r.Seq != next[r.Session] {
				t.Fatalf("session %s: chunk %d after %d chunks (duplicate or hole)\n%s", r.Session, r.Seq, next[r.Session], b)
			}
			next[r.Session]++
			if s := shape[len(shape)-1]; s != "chunks" {
				shape = append(shape, "chunks")
			}
		case manifest.KindEnd:
			shape = append(shape, "end")
			if len(sessions) == 1 && !strings.Contains(r.Note, "node node-a stopped renewing") {
				t.Errorf("A's session's end: %q", r.Note)
			}
		case manifest.KindGap:
			shape = append(shape, "gap")
			if r.FromSession != sessions[0] || r.ToWall == nil {
				t.Errorf("takeover gap %+v: want it from A's session's last durable chunk", r)
			}
		}
	}
	if got, want := strings.Join(shape, " "), "session chunks end gap session chunks end"; got != want || len(sessions) != 2 {
		t.Fatalf("chain %s, want %s\n%s", got, want, b)
	}
	for _, s := range sessions {
		if next[s] < 2 {
			t.Fatalf("session %s: %d chunks", s, next[s])
		}
	}
}
