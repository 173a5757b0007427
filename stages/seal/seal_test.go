package seal

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"camvault/format/chunk"
	"camvault/media"
	"camvault/pipeline"
)

func testKey(t testing.TB) (*chunk.SessionKey, *chunk.Opener) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	k, err := chunk.NewSessionKey([]age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	o, err := chunk.UnwrapSessionKey(k.Wrapped(), id)
	if err != nil {
		t.Fatal(err)
	}
	return k, o
}

func header(seq uint64) chunk.Header {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	return chunk.Header{Incident: "inc-1", Session: "ses-1", Track: chunk.TrackOriginal, Seq: seq,
		EndNS: 2e9, Wall: now, RetainUntil: now.Add(28 * 24 * time.Hour), Codec: "fmp4:h264"}
}

// TestStageSealsEverySegmentInAPipeline: items going through the stage on
// several workers come out sealed under their own header, their plaintext
// gone from the item, and each opens to what went in.
func TestStageSealsEverySegmentInAPipeline(t *testing.T) {
	key, opener := testKey(t)
	ctx := context.Background()
	src := pipeline.NewSource[*media.Item]("segments", 8, nil)
	var mu sync.Mutex
	got := map[uint64]*media.Item{}
	sealed := pipeline.Then(ctx, pipeline.From(src), Stage(3), 8)
	run := pipeline.Sink(ctx, sealed, pipeline.Stage[*media.Item, struct{}]{Name: "collect", Fn: func(_ context.Context, it *media.Item) (struct{}, error) {
		mu.Lock()
		got[it.Header.Seq] = it
		mu.Unlock()
		return struct{}{}, nil
	}})
	want := map[uint64][]byte{}
	for seq := uint64(0); seq < 20; seq++ {
		plain := bytes.Repeat([]byte{byte(seq)}, 1000+int(seq))
		want[seq] = append([]byte(nil), plain...)
		if err := src.Submit(ctx, "ses-1", &media.Item{Header: header(seq), Key: key, Plain: plain}); err != nil {
			t.Fatal(err)
		}
	}
	src.Close()
	if err := run.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d items out of the stage, want %d", len(got), len(want))
	}
	for seq, it := range got {
		if it.Err != nil || it.Sealed == nil || it.Plain != nil || it.CipherSize != len(it.Sealed.Bytes) {
			t.Fatalf("seq %d: err %v sealed %v plain %d bytes", seq, it.Err, it.Sealed != nil, len(it.Plain))
		}
		if it.Size() != it.CipherSize {
			t.Fatalf("seq %d: Size %d, want the ciphertext's %d", seq, it.Size(), it.CipherSize)
		}
		h, plain, err := opener.Open(it.Sealed.Bytes)
		if err != nil || h.Seq != seq || !bytes.Equal(plain, want[seq]) {
			t.Fatalf("seq %d: open: header seq %d, err %v, plaintext equal %v", seq, h.Seq, err, bytes.Equal(plain, want[seq]))
		}
	}
}

// TestSealPassesOnWhatIsNotASegment: gaps, ends and items an earlier stage
// failed on go through untouched, so the commit stage records them in
// their place.
func TestSealPassesOnWhatIsNotASegment(t *testing.T) {
	key, _ := testKey(t)
	failed := errors.New("earlier stage failed")
	for _, it := range []*media.Item{
		{Kind: media.ItemGap, Header: header(1), Note: "lost in transit"},
		{Kind: media.ItemEnd, Header: header(0), EndStatus: "stopped"},
		{Header: header(2), Key: key, Plain: []byte("kept for the gap"), Err: failed},
	} {
		out, err := Seal(context.Background(), it)
		if err != nil || out != it || out.Sealed != nil || !errors.Is(out.Err, it.Err) {
			t.Fatalf("kind %d: err %v, sealed %v", it.Kind, err, out.Sealed != nil)
		}
	}
}

// TestSealFailureIsCarriedOnTheItem: a header the format refuses (unknown
// track) fails that item alone, as an error on it, with the plaintext
// dropped all the same.
func TestSealFailureIsCarriedOnTheItem(t *testing.T) {
	key, _ := testKey(t)
	h := header(3)
	h.Track = "no-such-track"
	it, err := Seal(context.Background(), &media.Item{Header: h, Key: key, Plain: []byte("x")})
	if err != nil {
		t.Fatalf("stage error %v: a bad item must not stop the pipeline", err)
	}
	if !errors.Is(it.Err, chunk.ErrMalformed) || it.Sealed != nil || it.Plain != nil {
		t.Fatalf("item err %v, sealed %v, plain %d bytes", it.Err, it.Sealed != nil, len(it.Plain))
	}
}
