package store

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/internal/bufpool"
	"camvault/media"
	"camvault/storage/fs"
)

// BenchmarkStorePut: the store stage's Fn on one sealed 1 MiB chunk into
// the real file-system store, with its intent recorded first in a real
// SQLite catalog, as the write path runs it (fsyncs included), the
// chunk's pooled buffer released after. allocs/op is the stage's and the
// store's allocations per chunk.
func BenchmarkStorePut(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer cat.Close()
	st, err := fs.Open(filepath.Join(dir, "chunks"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := cat.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	s, err := cat.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses1", WrappedKey: []byte("k"), Now: now, Grace: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	w := &Writer{Store: st, Intents: cat}
	const size = 1 << 20
	src := make([]byte, size)
	if _, err := rand.Read(src); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		h := chunk.Header{Incident: s.Incident, Session: "ses1", Track: chunk.TrackOriginal, Seq: seq,
			Wall: now, RetainUntil: now.Add(24 * time.Hour)}
		buf := bufpool.Get(size)
		copy(buf, src)
		it, err := w.store(ctx, &media.Item{Header: h, Sealed: &chunk.Chunk{Header: h, Bytes: buf}, CipherSize: size})
		if err != nil || it.Err != nil {
			b.Fatal(err, it.Err)
		}
	}
}
