package commit

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/media"
)

// memCatalog records what the stage commits, as the catalog would.
type memCatalog struct {
	chunks      []catalog.Chunk
	records     []manifest.Record
	ends        []string
	checkpoints []manifest.Checkpoint
}

func (m *memCatalog) CommitChunk(_ context.Context, ch catalog.Chunk) (manifest.Record, error) {
	m.chunks = append(m.chunks, ch)
	return manifest.Record{Incident: ch.Incident, Kind: manifest.KindChunk, Seq: ch.Seq}, nil
}

func (m *memCatalog) AppendRecord(_ context.Context, r manifest.Record) (manifest.Record, error) {
	m.records = append(m.records, r)
	return r, nil
}

func (m *memCatalog) EndSession(_ context.Context, incident, session string, _ time.Time, status, note string) (manifest.Record, error) {
	m.ends = append(m.ends, session+" "+status+" "+note)
	return manifest.Record{}, nil
}

func (m *memCatalog) Head(context.Context, string) (uint64, string, bool, error) {
	return uint64(len(m.chunks) + len(m.records)), manifest.Genesis, true, nil
}

func (m *memCatalog) AddCheckpoint(_ context.Context, cp manifest.Checkpoint) error {
	m.checkpoints = append(m.checkpoints, cp)
	return nil
}

func (m *memCatalog) LatestDeadline(context.Context, string) (time.Time, error) {
	return time.Time{}, nil
}

type alerts struct{ calls []string }

func (a *alerts) AlertOnce(_ context.Context, typ, incident string, _ time.Time, _ map[string]any) (bool, error) {
	a.calls = append(a.calls, typ+" "+incident)
	return true, nil
}

func newCommitter(t *testing.T) (*Committer, *memCatalog, *alerts) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cat, al := &memCatalog{}, &alerts{}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	return &Committer{Catalog: cat, Signer: key, Alerts: al, Now: func() time.Time { return now }}, cat, al
}

func item(kind media.ItemKind, incident string, seq uint64) *media.Item {
	return &media.Item{Kind: kind, Header: chunk.Header{Incident: incident, Session: "ses-1", Track: chunk.TrackOriginal, Seq: seq, StartNS: int64(seq) * 2e9, EndNS: int64(seq+1) * 2e9}}
}

// TestStageCommitsEachKindInItsPlace: a stored chunk becomes a catalog row
// with the sealed chunk's digests (and is reported durable), a failed one
// a gap saying why, a gap a gap, and the end the session's end and a
// signed checkpoint, after which the session is forgotten.
func TestStageCommitsEachKindInItsPlace(t *testing.T) {
	c, cat, _ := newCommitter(t)
	var durable []uint64
	var ended []string
	c.Durable = func(it *media.Item, _ time.Time) { durable = append(durable, it.Header.Seq) }
	c.Ended = func(session string) { ended = append(ended, session) }
	st := c.Stage()
	if st.Name != "commit" || !st.Ordered || st.Workers != 1 {
		t.Fatalf("stage %q ordered %v workers %d: commit must be serial and in order", st.Name, st.Ordered, st.Workers)
	}
	ctx := context.Background()

	stored := item(media.ItemSegment, "inc-1", 1)
	stored.Object = chunk.ObjectKey(stored.Header)
	stored.Sealed = &chunk.Chunk{PlainSize: 10, PlainSHA256: [32]byte{1}, CipherSHA256: [32]byte{2}}
	stored.CipherSize, stored.Samples, stored.VideoSamples = 38, 60, 24
	failed := item(media.ItemSegment, "inc-1", 2)
	failed.Err = errors.New("disk full")
	gap := item(media.ItemGap, "inc-1", 3)
	gap.Note = "packets lost"
	end := item(media.ItemEnd, "inc-1", 0)
	end.EndStatus, end.Note = "stopped", "teardown"
	for _, it := range []*media.Item{stored, failed, gap, end} {
		if _, err := st.Fn(ctx, it); err != nil {
			t.Fatalf("kind %d seq %d: %v", it.Kind, it.Header.Seq, err)
		}
	}
	if len(cat.chunks) != 1 {
		t.Fatalf("%d chunk rows, want 1", len(cat.chunks))
	}
	row := cat.chunks[0]
	if row.Object != stored.Object || row.CipherSize != 38 || row.PlainSize != 10 || row.Samples != 60 || row.VideoSamples != 24 ||
		row.PlainSHA256 != hex.EncodeToString(stored.Sealed.PlainSHA256[:]) || row.CipherSHA256 != hex.EncodeToString(stored.Sealed.CipherSHA256[:]) {
		t.Fatalf("chunk row %+v", row)
	}
	if len(cat.records) != 2 || cat.records[0].Kind != manifest.KindGap || !strings.HasPrefix(cat.records[0].Note, "segment lost: disk full") ||
		cat.records[1].Kind != manifest.KindGap || cat.records[1].Note != "packets lost" || cat.records[1].Seq != 3 {
		t.Fatalf("gap records %+v", cat.records)
	}
	if len(cat.ends) != 1 || cat.ends[0] != "ses-1 stopped teardown" || len(cat.checkpoints) != 1 {
		t.Fatalf("ends %v, %d checkpoints", cat.ends, len(cat.checkpoints))
	}
	if len(durable) != 1 || durable[0] != 1 || len(ended) != 1 || ended[0] != "ses-1" {
		t.Fatalf("durable %v, ended %v", durable, ended)
	}
}

// TestShedWorkAlertsOncePerIncident: every shed job is a gap record, but
// the backoffice hears of it once per incident.
func TestShedWorkAlertsOncePerIncident(t *testing.T) {
	c, cat, al := newCommitter(t)
	st := c.Stage()
	ctx := context.Background()
	for i, inc := range []string{"inc-1", "inc-1", "inc-2", "inc-1"} {
		it := item(media.ItemGap, inc, uint64(i+1))
		it.Header.Track, it.Shed, it.Note = chunk.TrackProxy, true, "derived work shed"
		if _, err := st.Fn(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	if len(cat.records) != 4 {
		t.Fatalf("%d gap records, want 4", len(cat.records))
	}
	if strings.Join(al.calls, ",") != AlertTranscodeShed+" inc-1,"+AlertTranscodeShed+" inc-2" {
		t.Fatalf("alerts %v", al.calls)
	}
}
