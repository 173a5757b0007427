package recorder

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/internal/pgtest"
	"camvault/keys"
	"camvault/storage/fs"
)

// TestSettleAbandonedOnOneNode: node a dies mid-session and its camera
// never comes back. Two live nodes' recorders, settling at the same
// moment once the grace window after a's lease has passed, end the
// session once between them, and the one that settled signs the
// incident's head with its own key, naming itself.
func TestSettleAbandonedOnOneNode(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewCatalog(t)
	dead, err := catalog.Open(dsn, catalog.WithNode("a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	if err := dead.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-5 * time.Minute) // its lease expired 10 s later
	s, err := dead.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "sa", WrappedKey: []byte("k"),
		Now: started, Grace: time.Minute, Lease: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}

	type node struct {
		rec *Recorder
		pub []byte
	}
	var nodes []node
	for _, id := range []string{"b", "c"} {
		dir := t.TempDir()
		keyDir := keys.Dir(dir)
		if err := keys.Generate(keyDir); err != nil {
			t.Fatal(err)
		}
		recipients, err := keys.LoadRecipients(keyDir)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := keys.LoadSigner(keyDir)
		if err != nil {
			t.Fatal(err)
		}
		cat, err := catalog.Open(dsn, catalog.WithNode(id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cat.Close() })
		st, err := fs.Open(filepath.Join(dir, "chunks"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		rec, err := New(Config{Grace: time.Minute}, cat, st, recipients, signer, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rec.Close() })
		nodes = append(nodes, node{rec, signer.Public().(ed25519.PublicKey)})
	}

	var wg sync.WaitGroup
	settled := make([][]string, len(nodes))
	ran := make([]bool, len(nodes))
	errs := make([]error, len(nodes))
	gate := make(chan struct{})
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			settled[i], ran[i], errs[i] = n.rec.SettleAbandoned(ctx)
		}()
	}
	close(gate)
	wg.Wait()
	settler := -1
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if len(settled[i]) > 0 {
			if settler >= 0 || len(settled[i]) != 1 || settled[i][0] != s.Incident || !ran[i] {
				t.Fatalf("settled: %v (ran %v); want a's incident %s once", settled, ran, s.Incident)
			}
			settler = i
		}
	}
	if settler < 0 {
		t.Fatalf("nothing settled (ran %v)", ran)
	}
	inc, err := dead.Incident(ctx, s.Incident)
	if err != nil || inc.Status != catalog.StatusInterrupted {
		t.Fatalf("a's incident: %+v, %v; want interrupted", inc, err)
	}
	lines, err := dead.CheckpointLines(ctx, s.Incident)
	if err != nil || len(lines) == 0 {
		t.Fatalf("checkpoints: %d, %v; want the settler's", len(lines), err)
	}
	var cp manifest.Checkpoint
	if err := json.Unmarshal(lines[len(lines)-1], &cp); err != nil {
		t.Fatal(err)
	}
	idx, head, _, err := dead.Head(ctx, s.Incident)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b", "c"}[settler]; cp.Node != want || cp.Index != idx || cp.Head != head || cp.Verify(nodes[settler].pub) != nil {
		t.Fatalf("checkpoint %+v: want the head %d signed by node %s", cp, idx, want)
	}
	for i, n := range nodes {
		if again, _, err := n.rec.SettleAbandoned(ctx); err != nil || len(again) != 0 {
			t.Fatalf("node %d again: %v, %v; want nothing", i, again, err)
		}
	}
}
