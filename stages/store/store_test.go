package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/media"
	"camvault/pipeline"
	"camvault/storage"
)

// memStore is an in-memory put-once store that can be told to fail the
// first puts, as a store under load does.
type memStore struct {
	mu      sync.Mutex
	objects map[string][]byte
	until   map[string]time.Time
	failFor int // puts refused before one succeeds
	puts    int
}

func newMemStore() *memStore {
	return &memStore{objects: map[string][]byte{}, until: map[string]time.Time{}}
}

func (m *memStore) Put(_ context.Context, key string, data []byte, retainUntil time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	if m.failFor > 0 {
		m.failFor--
		return errors.New("store busy")
	}
	if _, ok := m.objects[key]; ok {
		return storage.ErrExists
	}
	m.objects[key] = append([]byte(nil), data...)
	m.until[key] = retainUntil
	return nil
}

func (m *memStore) Get(_ context.Context, key string) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[key]
	if !ok {
		return nil, storage.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func sealedItem(seq uint64, body string) *media.Item {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	h := chunk.Header{Incident: "inc-1", Session: "ses-1", Track: chunk.TrackOriginal, Seq: seq,
		Wall: now, RetainUntil: now.Add(28 * 24 * time.Hour)}
	return &media.Item{Header: h, Sealed: &chunk.Chunk{Header: h, Bytes: []byte(body)}, CipherSize: len(body)}
}

// TestStageStoresUnderTheObjectKeyWithTheDeadline: the stage puts the
// sealed bytes under the chunk's object key, with the header's deadline,
// and releases the chunk's buffer.
func TestStageStoresUnderTheObjectKeyWithTheDeadline(t *testing.T) {
	mem := newMemStore()
	w := &Writer{Store: mem}
	st := w.Stage(4)
	if st.Name != "store" || st.Workers != 4 || st.Ordered {
		t.Fatalf("stage %q, %d workers, ordered %v", st.Name, st.Workers, st.Ordered)
	}
	it := sealedItem(7, "ciphertext")
	out, err := st.Fn(context.Background(), it)
	if err != nil || out.Err != nil {
		t.Fatalf("store: %v / %v", err, out.Err)
	}
	const want = "inc-1/ses-1/original/00000007.chunk"
	if out.Object != want || chunk.ObjectKey(it.Header) != want {
		t.Fatalf("object %q, want %q", out.Object, want)
	}
	if string(mem.objects[want]) != "ciphertext" || !mem.until[want].Equal(it.Header.RetainUntil) {
		t.Fatalf("stored %q until %v", mem.objects[want], mem.until[want])
	}
	if out.Sealed.Bytes != nil {
		t.Fatal("the sealed buffer was not released after the put")
	}
}

// TestStageRetriesThenCarriesTheFailure: a store that refuses for a while
// is retried (every refusal reported), and one that never accepts leaves
// the failure on the item, not in the pipeline.
func TestStageRetriesThenCarriesTheFailure(t *testing.T) {
	mem := newMemStore()
	mem.failFor = 2
	var failures []string
	w := &Writer{Store: mem, Backoff: pipeline.Backoff{Base: time.Millisecond}, Failed: func(key string, err error) { failures = append(failures, key) }}
	out, err := w.Stage(1).Fn(context.Background(), sealedItem(1, "a"))
	if err != nil || out.Err != nil || len(failures) != 2 || mem.puts != 3 {
		t.Fatalf("err %v/%v, %d failures reported, %d puts", err, out.Err, len(failures), mem.puts)
	}

	mem.failFor = 100
	w.Attempts = 3
	out, err = w.Stage(1).Fn(context.Background(), sealedItem(2, "b"))
	if err != nil || out.Err == nil {
		t.Fatalf("a store that never accepts: stage err %v, item err %v", err, out.Err)
	}
	if _, ok := mem.objects[out.Object]; ok {
		t.Fatal("a refused chunk is in the store")
	}
}

// TestPutIsIdempotentNeverAnOverwrite: a retried put that had landed
// counts as stored; different bytes under the key are refused.
func TestPutIsIdempotentNeverAnOverwrite(t *testing.T) {
	mem := newMemStore()
	w := &Writer{Store: mem}
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	if err := w.Put(ctx, "k", []byte("same"), until); err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, "k", []byte("same"), until); err != nil {
		t.Fatalf("same bytes again: %v", err)
	}
	if err := w.Put(ctx, "k", []byte("other"), until); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("other bytes: %v, want ErrExists", err)
	}
	if string(mem.objects["k"]) != "same" {
		t.Fatalf("object overwritten: %q", mem.objects["k"])
	}
}

// TestStagePassesOnWhatIsNotASegment: gaps, ends and failed items are not
// stored.
func TestStagePassesOnWhatIsNotASegment(t *testing.T) {
	mem := newMemStore()
	w := &Writer{Store: mem}
	failed := sealedItem(3, "x")
	failed.Err = errors.New("seal failed")
	for _, it := range []*media.Item{{Kind: media.ItemGap}, {Kind: media.ItemEnd}, failed} {
		if _, err := w.Stage(1).Fn(context.Background(), it); err != nil || it.Object != "" {
			t.Fatalf("kind %d: err %v, object %q", it.Kind, err, it.Object)
		}
	}
	if mem.puts != 0 {
		t.Fatalf("%d puts for items that are not segments", mem.puts)
	}
}

// intentLog records intents, and what the store held when each came.
type intentLog struct {
	store   *memStore
	rows    []catalog.Chunk
	present []bool // the object was already in the store at its intent
	fail    error
	refused int
}

func (l *intentLog) RecordIntent(_ context.Context, ch catalog.Chunk, _ time.Time) error {
	if l.fail != nil {
		l.refused++
		return l.fail
	}
	l.store.mu.Lock()
	_, ok := l.store.objects[ch.Object]
	l.store.mu.Unlock()
	l.rows, l.present = append(l.rows, ch), append(l.present, ok)
	return nil
}

// TestStageRecordsTheIntentBeforeThePut: the catalog hears of every
// object before it exists, with the row the commit will write, so a crash
// after the put leaves something to reconcile rather than an orphan; a
// chunk whose intent cannot be recorded (retried for RetryFor) is not put
// at all.
func TestStageRecordsTheIntentBeforeThePut(t *testing.T) {
	mem := newMemStore()
	log := &intentLog{store: mem}
	w := &Writer{Store: mem, Intents: log}
	it := sealedItem(3, "ciphertext")
	it.Sealed.PlainSize, it.Samples, it.VideoSamples = 7, 5, 4
	it.Sealed.PlainSHA256[0], it.Sealed.CipherSHA256[0] = 0xaa, 0xbb
	if out, err := w.Stage(1).Fn(context.Background(), it); err != nil || out.Err != nil {
		t.Fatalf("store: %v / %v", err, out.Err)
	}
	const key = "inc-1/ses-1/original/00000003.chunk"
	if len(log.rows) != 1 || log.present[0] {
		t.Fatalf("intents %+v, object present at its intent: %v", log.rows, log.present)
	}
	r := log.rows[0]
	if r.Object != key || r.Seq != 3 || r.CipherSize != 10 || r.PlainSize != 7 || r.Samples != 5 || r.VideoSamples != 4 ||
		r.PlainSHA256[:2] != "aa" || r.CipherSHA256[:2] != "bb" || !r.RetainUntil.Equal(it.Header.RetainUntil) {
		t.Fatalf("intent row %+v", r)
	}
	if _, ok := mem.objects[key]; !ok {
		t.Fatal("not stored after its intent")
	}

	log.fail = errors.New("catalog full")
	w.RetryFor, w.Backoff = 100*time.Millisecond, pipeline.Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond}
	it = sealedItem(4, "ciphertext")
	out, err := w.Stage(1).Fn(context.Background(), it)
	if err != nil || out.Err == nil || out.Object != "" {
		t.Fatalf("intent refused: err %v, item err %v, object %q", err, out.Err, out.Object)
	}
	if _, ok := mem.objects["inc-1/ses-1/original/00000004.chunk"]; ok || mem.puts != 1 {
		t.Fatalf("put without its intent (%d puts)", mem.puts)
	}
	if log.refused < 3 {
		t.Fatalf("the intent was tried %d times: not retried", log.refused)
	}
	if out.Sealed.Bytes != nil {
		t.Fatal("the sealed buffer was not released")
	}
}

// TestGateKeepsChunksOutOfAFullDisk: while the gate refuses (the disk's
// reserve is released, the room left is the catalog's), a chunk is
// neither announced nor put, and carries the gate's reason to its gap;
// once the gate opens again chunks are stored as before.
func TestGateKeepsChunksOutOfAFullDisk(t *testing.T) {
	mem := newMemStore()
	log := &intentLog{store: mem}
	full := errors.New("storage full: disk out of space")
	gate := full
	w := &Writer{Store: mem, Intents: log, Gate: func() error { return gate }}
	out, err := w.Stage(1).Fn(context.Background(), sealedItem(1, "ciphertext"))
	if err != nil || !errors.Is(out.Err, full) || out.Object != "" {
		t.Fatalf("gate closed: err %v, item err %v, object %q", err, out.Err, out.Object)
	}
	if mem.puts != 0 || len(log.rows) != 0 || out.Sealed.Bytes != nil {
		t.Fatalf("gate closed: %d puts, %d intents, buffer released %v", mem.puts, len(log.rows), out.Sealed.Bytes == nil)
	}
	gate = nil
	if out, err := w.Stage(1).Fn(context.Background(), sealedItem(2, "ciphertext")); err != nil || out.Err != nil || mem.puts != 1 {
		t.Fatalf("gate open: %v / %v, %d puts", err, out.Err, mem.puts)
	}
}
