package commit

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/storage"
)

type objects map[string][]byte

func (o objects) Get(_ context.Context, key string) (io.ReadCloser, error) {
	b, ok := o[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// sealed seals a segment as the seal stage does and returns its object
// and the catalog row its intent records.
func sealed(t *testing.T, key *chunk.SessionKey, incident, session, track string, seq uint64, t0 time.Time) ([]byte, catalog.Chunk) {
	t.Helper()
	h := chunk.Header{Incident: incident, Session: session, Track: track, Seq: seq, StartNS: int64(seq) * 2e9, EndNS: int64(seq+1) * 2e9,
		Wall: t0.Add(time.Duration(seq) * 2 * time.Second), RetainUntil: t0.Add(28 * 24 * time.Hour), Codec: "fmp4:h264"}
	c, err := key.Seal(h, []byte("segment "+track+string(rune('0'+seq))))
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), c.Bytes...)
	return b, catalog.Chunk{Incident: incident, Session: session, Track: track, Seq: seq, Object: chunk.ObjectKey(h),
		StartNS: h.StartNS, EndNS: h.EndNS, Wall: h.Wall, RetainUntil: h.RetainUntil,
		PlainSize: int64(c.PlainSize), CipherSize: int64(len(b)), Samples: 60, VideoSamples: 60,
		PlainSHA256: hex.EncodeToString(c.PlainSHA256[:]), CipherSHA256: hex.EncodeToString(c.CipherSHA256[:])}
}

// TestReconcile: what a kill between put and commit leaves is settled at
// the next start. The chunk that reached the store, and its derived
// proxy, are verified without the identity and committed in their
// session's chain; an intent whose put never landed is dropped; an object
// that is not the sealed chunk announced, or belongs to a session that has
// ended, is quarantined with its deadline: none is left unaccounted for.
func TestReconcile(t *testing.T) {
	ctx := context.Background()
	cat, err := catalog.Open(filepath.Join(t.TempDir(), "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if err := cat.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	key, err := chunk.NewSessionKey([]age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	run, err := cat.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses-run", WrappedKey: key.Wrapped(), Now: t0, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	store := objects{}
	// intend records ch's intent and puts b, as the store stage does.
	intend := func(b []byte, ch catalog.Chunk) catalog.Chunk {
		t.Helper()
		if err := cat.RecordIntent(ctx, ch, t0); err != nil {
			t.Fatal(err)
		}
		if b != nil {
			store[ch.Object] = b
		}
		return ch
	}
	// seq 0 and 1 committed as usual; seq 2 put, its commit killed; its
	// proxy put too; seq 3's put never landed.
	for seq := uint64(0); seq < 2; seq++ {
		b, ch := sealed(t, key, run.Incident, "ses-run", chunk.TrackOriginal, seq, t0)
		store[ch.Object] = b
		if _, err := cat.CommitChunk(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	durable := intend(sealed(t, key, run.Incident, "ses-run", chunk.TrackOriginal, 2, t0))
	proxy := intend(sealed(t, key, run.Incident, "ses-run", chunk.TrackProxy, 2, t0))
	_, c3 := sealed(t, key, run.Incident, "ses-run", chunk.TrackOriginal, 3, t0)
	never := intend(nil, c3)
	// A stored object that is not what its intent announced.
	b4, c4 := sealed(t, key, run.Incident, "ses-run", chunk.TrackThumb, 2, t0)
	b4[len(b4)-1] ^= 1
	altered := intend(b4, c4)

	res, err := Reconcile(ctx, cat, store, func() time.Time { return t0.Add(time.Minute) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Reconciled{Committed: 2, Quarantined: 1, Dropped: 1}); res != want {
		t.Fatalf("reconciled %+v, want %+v", res, want)
	}
	lines, _ := cat.ManifestLines(ctx, run.Incident)
	recs, _, err := manifest.VerifyChain(run.Incident, lines)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Kind == manifest.KindChunk {
			got = append(got, r.Object)
		}
		if r.Kind == manifest.KindGap {
			t.Fatalf("gap recorded for a durable chunk: %+v", r)
		}
	}
	if len(got) != 4 || got[2] != durable.Object || got[3] != proxy.Object {
		t.Fatalf("chunks in the manifest %q, want seq 0, 1, then %s and %s", got, durable.Object, proxy.Object)
	}
	last := recs[len(recs)-2]
	if last.CipherSHA256 != durable.CipherSHA256 || last.PlainSHA256 != durable.PlainSHA256 || last.Samples != 60 {
		t.Fatalf("recovered record %+v, want the intent's digests", last)
	}
	left, _ := cat.Intents(ctx)
	if len(left) != 1 || left[0].Object != altered.Object || left[0].Status != catalog.IntentQuarantined || left[0].Note == "" {
		t.Fatalf("intents left %+v, want the altered one quarantined", left)
	}
	if known, _, _ := cat.Accounted(ctx, never.Object); known {
		t.Fatal("the intent of a put that never landed was kept")
	}
	// Everything in the store is accounted for.
	for k := range store {
		if known, _, err := cat.Accounted(ctx, k); err != nil || !known {
			t.Errorf("%s unaccounted for after the reconcile (%v)", k, err)
		}
	}

	// A leftover of a session that has ended is quarantined, not appended
	// after its end.
	if _, err := cat.EndSession(ctx, run.Incident, "ses-run", t0.Add(time.Minute), catalog.StatusInterrupted, "server restart"); err != nil {
		t.Fatal(err)
	}
	late := intend(sealed(t, key, run.Incident, "ses-run", chunk.TrackOriginal, 5, t0))
	res, err = Reconcile(ctx, cat, store, time.Now, nil)
	if err != nil || res != (Reconciled{Quarantined: 1}) {
		t.Fatalf("after the end: %+v (%v)", res, err)
	}
	if after, _ := cat.ManifestLines(ctx, run.Incident); len(after) != len(lines)+1 {
		t.Fatalf("manifest grew by %d records, want the end only", len(after)-len(lines))
	}
	if known, _, _ := cat.Accounted(ctx, late.Object); !known {
		t.Fatal("quarantined object unaccounted for")
	}
}
