package commit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/media"
)

// BenchmarkCommitStage: the commit stage's Fn on one stored chunk: its
// row and manifest record in one durable transaction of a real SQLite
// catalog, with a signed checkpoint every 30 chunks as serve's default.
// Each op also records the chunk's intent first, as the store stage
// does: together they are what one chunk costs the catalog.
func BenchmarkCommitStage(b *testing.B) {
	ctx := context.Background()
	cat, err := catalog.Open(filepath.Join(b.TempDir(), "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	now := time.Now()
	if err := cat.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	s, err := cat.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses1", WrappedKey: []byte("k"), Now: now, Grace: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	c := &Committer{Catalog: cat, Signer: priv, Now: time.Now, CheckpointEvery: 30}
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		h := chunk.Header{Incident: s.Incident, Session: "ses1", Track: chunk.TrackOriginal, Seq: seq,
			StartNS: int64(seq-1) * 2e9, EndNS: int64(seq) * 2e9, Wall: now, RetainUntil: now.Add(24 * time.Hour)}
		it := &media.Item{Header: h, Object: chunk.ObjectKey(h), Sealed: &chunk.Chunk{Header: h, PlainSize: 1 << 20}, CipherSize: 1<<20 + 100}
		if err := cat.RecordIntent(ctx, catalog.Chunk{Incident: h.Incident, Session: h.Session, Track: h.Track, Seq: h.Seq,
			Object: it.Object, Wall: h.Wall, RetainUntil: h.RetainUntil}, now); err != nil {
			b.Fatal(err)
		}
		if _, err := c.commit(ctx, it); err != nil {
			b.Fatal(err)
		}
	}
}
