package commit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/storage/fs"
)

// flakyAnchors refuses checkpoint anchors while down, and counts reads.
type flakyAnchors struct {
	*fs.Store
	down bool
	gets int
}

func (f *flakyAnchors) Put(ctx context.Context, key string, data []byte, until time.Time) error {
	if f.down && strings.Contains(key, "/"+manifest.AnchorDir) {
		return errors.New("injected: anchors refused")
	}
	return f.Store.Put(ctx, key, data, until)
}

func (f *flakyAnchors) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	f.gets++
	return f.Store.Get(ctx, key)
}

// TestReanchorerWritesRefusedAnchors: of three checkpoints, the store
// refuses the last two anchors. A round while it still refuses fails and
// writes nothing; once it recovers, rounds of at most Batch checkpoints
// write the two missing anchors (the catalog's lines, byte for byte) and
// mark all three, after which a round reads nothing from the store.
func TestReanchorerWritesRefusedAnchors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	fst, err := fs.Open(filepath.Join(dir, "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	defer fst.Close()
	st := &flakyAnchors{Store: fst}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	cat.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: now})
	s, err := cat.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses1", WrappedKey: []byte("k"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c := &Committer{Catalog: cat, Signer: priv, Now: time.Now, Anchors: st}
	for i := range 3 {
		if i == 1 {
			st.down = true
		}
		if _, err := cat.AppendRecord(ctx, manifest.Record{Incident: s.Incident, Kind: manifest.KindGap, Wall: now, Note: "n"}); err != nil {
			t.Fatal(err)
		}
		if err := c.Checkpoint(ctx, s.Incident); (err != nil) != (i > 0) {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
	}
	anchors := func() []string {
		keys, err := fst.List(ctx, manifest.AnchorPrefix(s.Incident))
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if n := len(anchors()); n != 1 {
		t.Fatalf("%d anchors before the retry, want 1", n)
	}
	r := &Reanchorer{Catalog: cat, Store: st, Batch: 2}
	if written, _, err := r.Round(ctx); err == nil || written != 0 {
		t.Fatalf("round while the store refuses: %d written, %v", written, err)
	}
	st.down = false
	total := 0
	for range 3 {
		written, more, err := r.Round(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total += written
		if !more {
			break
		}
	}
	if total != 2 || len(anchors()) != 3 {
		t.Fatalf("%d anchors written, %d in the store; want 2 and 3", total, len(anchors()))
	}
	lines, _ := cat.CheckpointLines(ctx, s.Incident)
	for i, k := range anchors() {
		rc, err := fst.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != string(lines[i]) {
			t.Fatalf("anchor %s is %s, the catalog's checkpoint %s", k, b, lines[i])
		}
	}
	st.gets = 0
	if written, more, err := r.Round(ctx); written != 0 || more || err != nil || st.gets != 0 {
		t.Fatalf("round after all are anchored: %d written, more %v, %v, %d reads", written, more, err, st.gets)
	}
}
