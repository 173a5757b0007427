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
	"camvault/internal/pgtest"
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

// TestReanchorerOneNodeAtATime: two nodes share a PostgreSQL catalog, and
// a checkpoint's anchor is missing. While node a runs a round, node b's
// round does nothing (ran false, no store read); once a is done, b's
// round runs and writes the anchor.
func TestReanchorerOneNodeAtATime(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewCatalog(t)
	var cats [2]*catalog.Catalog
	for i, node := range []string{"a", "b"} {
		c, err := catalog.Open(dsn, catalog.WithNode(node))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cats[i] = c
	}
	fst, err := fs.Open(filepath.Join(t.TempDir(), "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	defer fst.Close()
	st := &flakyAnchors{Store: fst, down: true}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	cats[0].AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: now})
	s, err := cats[0].StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses1", WrappedKey: []byte("k"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c := &Committer{Catalog: cats[0], Signer: priv, Now: time.Now, Anchors: st}
	if err := c.Checkpoint(ctx, s.Incident); !errors.Is(err, ErrNotAnchored) {
		t.Fatalf("checkpoint while the store refuses: %v", err)
	}
	st.down = false
	a := &Reanchorer{Catalog: cats[0], Store: st, Lock: cats[0]}
	b := &Reanchorer{Catalog: cats[1], Store: st, Lock: cats[1]}
	ran, err := cats[0].Exclusive(ctx, reanchorJob, func(ctx context.Context) error {
		written, _, ran, err := b.RoundExclusive(ctx)
		if ran || written != 0 || err != nil || st.gets != 0 {
			t.Errorf("b's round while a runs one: ran %v, %d written, %v, %d store reads; want nothing done", ran, written, err, st.gets)
		}
		return nil
	})
	if !ran || err != nil {
		t.Fatalf("a's round: ran %v, %v", ran, err)
	}
	if written, _, ran, err := b.RoundExclusive(ctx); !ran || written != 1 || err != nil {
		t.Fatalf("b's round after a's: ran %v, %d written, %v; want the anchor written", ran, written, err)
	}
	if written, _, ran, err := a.RoundExclusive(ctx); !ran || written != 0 || err != nil {
		t.Fatalf("a's round after b's: ran %v, %d written, %v; want nothing left", ran, written, err)
	}
}
