package review

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"filippo.io/age"

	"camvault/format/chunk"
	"camvault/format/manifest"
)

// memSource is an incident held in memory: sealed chunks and their
// manifest records, sealed with a real session key.
type memSource struct {
	key     *chunk.SessionKey
	lines   [][]byte
	chunks  map[string][]byte
	session string
}

func newSource(t *testing.T, id *age.X25519Identity) *memSource {
	t.Helper()
	key, err := chunk.NewSessionKey([]age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	return &memSource{key: key, chunks: map[string][]byte{}, session: "ses-1"}
}

func (s *memSource) add(t *testing.T, track string, seq uint64, plain []byte) {
	t.Helper()
	h := chunk.Header{Incident: "inc-1", Session: s.session, Track: track, Seq: seq, Wall: time.Unix(0, 0).UTC(),
		RetainUntil: time.Unix(1e9, 0).UTC(), Codec: "fmp4:h264"}
	c, err := s.key.Seal(h, plain)
	if err != nil {
		t.Fatal(err)
	}
	obj := chunk.ObjectKey(h)
	s.chunks[obj] = append([]byte(nil), c.Bytes...)
	sum := sha256.Sum256(plain)
	line, _, err := (&manifest.Record{Incident: "inc-1", Kind: manifest.KindChunk, Session: s.session, Track: track, Seq: seq,
		Object: obj, PlainSHA256: hex.EncodeToString(sum[:])}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	s.lines = append(s.lines, line)
}

func (s *memSource) ManifestLines(context.Context) ([][]byte, error) { return s.lines, nil }
func (s *memSource) WrappedKeys(context.Context) (map[string][]byte, error) {
	return map[string][]byte{s.session: s.key.Wrapped()}, nil
}
func (s *memSource) Chunk(_ context.Context, object string) ([]byte, error) {
	b, ok := s.chunks[object]
	if !ok {
		return nil, errors.New("no such object")
	}
	return b, nil
}

// fakeRenderer "transcodes" by tagging its input, and counts its calls.
type fakeRenderer struct{ calls int }

func (r *fakeRenderer) Proxy(_ context.Context, init, seg []byte) ([]byte, []byte, error) {
	r.calls++
	return append([]byte("proxy-init:"), init...), append([]byte("proxy-of:"), seg...), nil
}

type memAudit struct{ records []string }

func (a *memAudit) AddAudit(_ context.Context, _ time.Time, actor, action, incident string, d map[string]any) error {
	a.records = append(a.records, fmt.Sprintf("%s %s %s segment=%v reason=%v rendition=%v", actor, action, incident, d["segment"], d["reason"], d["rendition"]))
	return nil
}

func TestProxyStoredOrMadeOnDemand(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	src := newSource(t, id)
	src.add(t, chunk.TrackOriginal, 0, []byte("original init"))
	src.add(t, chunk.TrackOriginal, 1, []byte("original segment 1"))
	src.add(t, chunk.TrackOriginal, 2, []byte("original segment 2"))
	src.add(t, chunk.TrackProxy, 0, []byte("stored proxy init"))
	src.add(t, chunk.TrackProxy, 1, []byte("stored proxy 1")) // the proxy of segment 2 was shed
	rend, audit := &fakeRenderer{}, &memAudit{}
	v := &Reviewer{Identities: []age.Identity{id}, Renderer: rend, Audit: audit}
	ctx := context.Background()

	r, err := v.Proxy(ctx, src, Request{Incident: "inc-1", Seq: 1, Viewer: "rita", Reason: "complaint 2026-114"})
	if err != nil {
		t.Fatal(err)
	}
	if r.OnDemand || string(r.Init) != "stored proxy init" || string(r.Segment) != "stored proxy 1" || rend.calls != 0 {
		t.Fatalf("segment 1: %+v, renderer called %d times; want the stored proxy", r, rend.calls)
	}
	for i := 0; i < 2; i++ {
		r, err = v.Proxy(ctx, src, Request{Incident: "inc-1", Seq: 2, Viewer: "rita", Reason: "complaint 2026-114"})
		if err != nil {
			t.Fatal(err)
		}
		if !r.OnDemand || string(r.Init) != "proxy-init:original init" || string(r.Segment) != "proxy-of:original segment 2" {
			t.Fatalf("segment 2: %+v; want a proxy made from the original", r)
		}
	}
	if rend.calls != 1 {
		t.Fatalf("the on-demand proxy was made %d times; the second view must come from memory", rend.calls)
	}
	want := []string{
		"rita footage.viewed inc-1 segment=1 reason=complaint 2026-114 rendition=proxy",
		"rita footage.viewed inc-1 segment=2 reason=complaint 2026-114 rendition=proxy made on demand",
		"rita footage.viewed inc-1 segment=2 reason=complaint 2026-114 rendition=proxy made on demand",
	}
	if fmt.Sprint(audit.records) != fmt.Sprint(want) {
		t.Fatalf("audit %q, want %q", audit.records, want)
	}

	// No reason, no footage, no audit record.
	if _, err := v.Proxy(ctx, src, Request{Incident: "inc-1", Seq: 1, Viewer: "rita"}); !errors.Is(err, ErrNoReason) {
		t.Fatalf("no reason: %v", err)
	}
	if _, err := v.Proxy(ctx, src, Request{Incident: "inc-1", Seq: 9, Viewer: "rita", Reason: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing segment: %v", err)
	}
	if len(audit.records) != 3 {
		t.Fatalf("refused views were audited: %q", audit.records)
	}

	// A chunk altered in the store is refused, not shown.
	for obj, b := range src.chunks {
		if bytes.Contains([]byte(obj), []byte("proxy/00000001")) {
			b[len(b)-1] ^= 1
		}
	}
	if _, err := v.Proxy(ctx, src, Request{Incident: "inc-1", Seq: 1, Viewer: "rita", Reason: "x"}); err == nil {
		t.Fatal("an altered chunk was decrypted and shown")
	}
	// Another identity cannot open anything.
	other, _ := age.GenerateX25519Identity()
	v2 := &Reviewer{Identities: []age.Identity{other}, Renderer: rend, Audit: audit}
	if _, err := v2.Proxy(ctx, src, Request{Incident: "inc-1", Seq: 2, Viewer: "rita", Reason: "x"}); err == nil {
		t.Fatal("a foreign identity opened the footage")
	}
}

func TestCacheIsBounded(t *testing.T) {
	v := &Reviewer{CacheBytes: 100}
	for i := 0; i < 10; i++ {
		v.store(fmt.Sprint(i), &Rendition{Init: make([]byte, 10), Segment: make([]byte, 30)})
	}
	if v.used > 100 || len(v.cache) != 2 {
		t.Fatalf("cache holds %d bytes in %d entries, limit 100", v.used, len(v.cache))
	}
	if _, ok := v.cached("9"); !ok {
		t.Fatal("the newest entry was evicted")
	}
	v.store("big", &Rendition{Segment: make([]byte, 200)})
	if _, ok := v.cached("big"); ok {
		t.Fatal("an entry larger than the cache was kept")
	}
}
