package commit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/media"
)

// fullCatalog is a catalog on a full disk: every write fails until room
// is freed (Recover releasing the reserve); refuseChunks fails chunk
// commits even then.
type fullCatalog struct {
	memCatalog
	full, refuseChunks bool
	failed             int
}

var errDiskFull = errors.New("database or disk is full")

func (f *fullCatalog) refuse() bool {
	if f.full {
		f.failed++
	}
	return f.full
}

func (f *fullCatalog) CommitChunk(ctx context.Context, ch catalog.Chunk) (manifest.Record, error) {
	if f.refuse() || f.refuseChunks {
		return manifest.Record{}, errDiskFull
	}
	return f.memCatalog.CommitChunk(ctx, ch)
}

func (f *fullCatalog) AppendRecord(ctx context.Context, r manifest.Record) (manifest.Record, error) {
	if f.refuse() {
		return manifest.Record{}, errDiskFull
	}
	return f.memCatalog.AppendRecord(ctx, r)
}

func (f *fullCatalog) EndSession(ctx context.Context, incident, session string, now time.Time, status, note string) (manifest.Record, error) {
	if f.refuse() {
		return manifest.Record{}, errDiskFull
	}
	return f.memCatalog.EndSession(ctx, incident, session, now, status, note)
}

// TestFullDiskStillRecordsTheLoss: on a full disk a gap record, a chunk's
// commit and a session's end that fail are tried again once Recover has
// freed room, so the manifest records them; a chunk whose commit still
// fails is recorded as a gap, never silently missing. Without Recover
// (the code before), each was dropped: no record at all.
func TestFullDiskStillRecordsTheLoss(t *testing.T) {
	c, _, _ := newCommitter(t)
	cat := &fullCatalog{full: true}
	c.Catalog = cat
	var told []error
	c.Recover = func(err error) bool {
		told = append(told, err)
		cat.full = false // the reserve is released: room for the catalog
		return true
	}
	st := c.Stage()
	lost := item(media.ItemSegment, "inc-1", 2)
	lost.Err = errors.New("storage full")
	stored := item(media.ItemSegment, "inc-1", 3)
	stored.Object, stored.Sealed = "inc-1/ses-1/original/00000003.chunk", &chunk.Chunk{PlainSize: 10}
	end := &media.Item{Kind: media.ItemEnd, Header: item(0, "inc-1", 0).Header, EndStatus: "closed"}
	for _, it := range []*media.Item{lost, stored} {
		cat.full = true
		if _, err := st.Fn(context.Background(), it); err != nil {
			t.Fatalf("seq %d: %v", it.Header.Seq, err)
		}
	}
	cat.full = true
	if _, err := st.Fn(context.Background(), end); err != nil {
		t.Fatalf("end: %v", err)
	}
	if len(told) != 3 || cat.failed != 3 {
		t.Errorf("Recover told %d times, %d writes failed; want 3 and 3", len(told), cat.failed)
	}
	if len(cat.records) != 1 || cat.records[0].Seq != 2 || len(cat.chunks) != 1 || cat.chunks[0].Seq != 3 || len(cat.ends) != 1 {
		t.Fatalf("records %+v, chunks %+v, ends %v: want the gap of 2, chunk 3 and the end", cat.records, cat.chunks, cat.ends)
	}

	// A chunk whose commit fails whatever room there is: a gap in its place.
	cat.refuseChunks = true
	again := item(media.ItemSegment, "inc-1", 4)
	again.Object, again.Sealed = "inc-1/ses-1/original/00000004.chunk", &chunk.Chunk{PlainSize: 10}
	if _, err := st.Fn(context.Background(), again); err == nil {
		t.Fatal("a chunk that could not be committed reported no error")
	}
	if r := cat.records[len(cat.records)-1]; r.Seq != 4 || r.Kind != manifest.KindGap || !strings.Contains(r.Note, "not committed") {
		t.Fatalf("last record %+v, want the gap of seq 4", r)
	}
}
