package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/stages/commit"
	"camvault/storage/fs"
)

// TestCatalogRewriteCaughtByAnchors: someone holding the disk, node key
// included, truncates an incident's manifest and re-signs its checkpoint.
// The chain and the signatures then verify, but the checkpoints anchored
// in the WORM store do not agree, and verify fails.
func TestCatalogRewriteCaughtByAnchors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "catalog.db")
	cat, err := catalog.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	st, err := fs.Open(filepath.Join(dir, "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	cat.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: now})
	s, err := cat.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses1", WrappedKey: []byte("k"), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	c := &commit.Committer{Catalog: cat, Signer: priv, Now: time.Now, Anchors: st, CheckpointEvery: 2}
	id, _ := age.GenerateX25519Identity()
	key, err := chunk.NewSessionKey([]age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= 4; i++ {
		obj := chunk.ObjectKey(chunk.Header{Incident: s.Incident, Session: "ses1", Track: chunk.TrackOriginal, Seq: uint64(i)})
		ch, err := key.Seal(chunk.Header{Incident: s.Incident, Session: "ses1", Track: chunk.TrackOriginal, Seq: uint64(i), Wall: now, RetainUntil: now.Add(time.Hour)}, []byte(fmt.Sprintf("segment %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, obj, ch.Bytes, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Chunk(ctx, catalog.Chunk{Incident: s.Incident, Session: "ses1", Track: "original", Seq: uint64(i), Object: obj,
			Wall: now, RetainUntil: now.Add(time.Hour), CipherSize: int64(len(ch.Bytes)),
			PlainSHA256: hex.EncodeToString(ch.PlainSHA256[:]), CipherSHA256: hex.EncodeToString(ch.CipherSHA256[:])}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.End(ctx, s.Incident, "ses1", catalog.StatusClosed, "teardown"); err != nil {
		t.Fatal(err)
	}
	src := &CatalogSource{Catalog: cat, Store: st, ID: s.Incident}
	rep, err := Verify(ctx, src, KeysOf(pub), nil)
	if err != nil || !rep.OK() || rep.Anchored < 2 {
		t.Fatalf("honest incident: ok %v, %d anchored, %v %v", rep.OK(), rep.Anchored, rep.Problems, err)
	}

	// The rewrite: drop the last chunk, the end record and every checkpoint
	// from the catalog, then sign a checkpoint over the shortened chain.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lines, _ := cat.ManifestLines(ctx, s.Incident)
	keep := len(lines) - 2
	for _, q := range []string{
		`DELETE FROM manifest WHERE incident = ? AND idx >= ` + fmt.Sprint(keep),
		`DELETE FROM checkpoints WHERE incident = ?`,
		`DELETE FROM chunks WHERE incident = ? AND seq = 4`,
	} {
		if _, err := db.Exec(q, s.Incident); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE incidents SET head = ?, next_index = ? WHERE id = ?`, manifest.HashLine(lines[keep-1]), keep, s.Incident); err != nil {
		t.Fatal(err)
	}
	forger := &commit.Committer{Catalog: cat, Signer: priv, Now: time.Now} // no anchors: the attacker cannot rewrite WORM
	if err := forger.Checkpoint(ctx, s.Incident); err != nil {
		t.Fatal(err)
	}
	// Without the anchors the forgery is consistent...
	plain := &CatalogSource{Catalog: cat, Store: noLister{st}, ID: s.Incident}
	if rep, _ := Verify(ctx, plain, KeysOf(pub), nil); !rep.OK() {
		t.Fatalf("forgery should pass chain and signature checks: %v", rep.Problems)
	}
	// ...and the anchors expose it.
	rep, _ = Verify(ctx, src, KeysOf(pub), nil)
	if rep.OK() || !strings.Contains(fmt.Sprint(rep.Problems), "truncated") {
		t.Fatalf("rewritten catalog not caught: %v", rep.Problems)
	}
}

// noLister hides the store's List, as a store without anchors would.
type noLister struct{ *fs.Store }

func (noLister) List() {}
