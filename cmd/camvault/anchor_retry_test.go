package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/datadir"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/keys"
	"camvault/server"
	"camvault/stages/commit"
	"camvault/storage/fs"
)

// anchorRefusingStore is the node's fs store refusing every checkpoint
// anchor while refuse is set, as a store failing at the wrong moment
// would; chunks still go through.
type anchorRefusingStore struct {
	*fs.Store
	refuse  atomic.Bool
	refused atomic.Int64
}

func (s *anchorRefusingStore) Put(ctx context.Context, key string, data []byte, until time.Time) error {
	if s.refuse.Load() && strings.Contains(key, "/"+manifest.AnchorDir) {
		s.refused.Add(1)
		return errors.New("injected: the store refuses anchors")
	}
	return s.Store.Put(ctx, key, data, until)
}

// TestUnanchoredCheckpointIsRetried: the store refuses the anchor of an
// incident's final checkpoint. `verify` on the node then passes with a
// warning, exit status 3 and unanchored_records in --json, rather than a
// plain OK; serve retries the anchor, still refused, then the store
// recovers, the retry writes it and verify is clean (exit 0).
func TestUnanchoredCheckpointIsRetried(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	if _, errs, code := runCmd(t, "keygen", "--data", data); code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	dir := datadir.New(data)
	signer, err := keys.LoadSigner(dir.Keys())
	if err != nil {
		t.Fatal(err)
	}
	recipients, err := keys.LoadRecipients(dir.Keys())
	if err != nil {
		t.Fatal(err)
	}
	openStore := func() *anchorRefusingStore {
		fst, err := fs.Open(dir.Chunks())
		if err != nil {
			t.Fatal(err)
		}
		return &anchorRefusingStore{Store: fst}
	}

	// Record an incident of an init and three media chunks: the
	// checkpoint after the third chunk is anchored, the store then
	// refuses the final one's anchor.
	cat, err := catalog.Open(dir.Catalog())
	if err != nil {
		t.Fatal(err)
	}
	st := openStore()
	now := time.Now()
	if err := cat.AddCamera(ctx, catalog.Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	s, err := cat.StartSession(ctx, catalog.SessionStart{Camera: "cam1", Officer: "o", Session: "ses1", Now: now, Grace: time.Minute,
		WrappedKey: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	key, err := chunk.NewSessionKey(recipients)
	if err != nil {
		t.Fatal(err)
	}
	c := &commit.Committer{Catalog: cat, Signer: signer, Now: time.Now, Anchors: st, CheckpointEvery: 3}
	for i := uint64(0); i <= 3; i++ {
		if i == 3 {
			st.refuse.Store(true)
		}
		h := chunk.Header{Incident: s.Incident, Session: "ses1", Track: chunk.TrackOriginal, Seq: i, Wall: now, RetainUntil: now.Add(time.Hour)}
		sealed, err := key.Seal(h, []byte(fmt.Sprintf("segment %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		obj := chunk.ObjectKey(h)
		if err := st.Put(ctx, obj, sealed.Bytes, h.RetainUntil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Chunk(ctx, catalog.Chunk{Incident: s.Incident, Session: "ses1", Track: h.Track, Seq: i, Object: obj,
			Wall: now, RetainUntil: h.RetainUntil, CipherSize: int64(len(sealed.Bytes)),
			PlainSHA256: hex.EncodeToString(sealed.PlainSHA256[:]), CipherSHA256: hex.EncodeToString(sealed.CipherSHA256[:])}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.End(ctx, s.Incident, "ses1", catalog.StatusClosed, "teardown"); err == nil || st.refused.Load() != 1 {
		t.Fatalf("end with the anchor refused: %v, %d refused", err, st.refused.Load())
	}
	cat.Close()
	st.Close()

	verify := func() (string, int) {
		t.Helper()
		out, errs, code := runCmd(t, "verify", s.Incident, "--data", data)
		if code == 2 {
			t.Fatalf("verify: %s", errs)
		}
		return out, code
	}
	out, code := verify()
	if code != 3 || !strings.Contains(out, "warning: the last 2 record(s) (4..5)") || !strings.Contains(out, "result: OK, with the warning above") {
		t.Fatalf("verify with the final anchor missing: exit %d, want 3:\n%s", code, out)
	}
	jout, _, code := runCmd(t, "verify", s.Incident, "--json", "--data", data)
	var rep struct {
		Unanchored int `json:"unanchored_records"`
		Anchored   int `json:"anchored"`
	}
	if err := json.Unmarshal([]byte(jout), &rep); err != nil || code != 3 || rep.Unanchored != 2 || rep.Anchored != 1 {
		t.Fatalf("verify --json: exit %d, %+v, %v:\n%s", code, rep, err, jout)
	}

	// serve retries the anchor while the store still refuses it...
	st = openStore()
	st.refuse.Store(true)
	srv, err := server.Open(server.Config{DataDir: data, RTSPAddress: "127.0.0.1:0", HTTPAddress: "-", WHIPAddress: "-",
		SweepEvery: -1, AuditAnchorEvery: -1, AnchorRetryEvery: 20 * time.Millisecond, Store: st},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer srv.Close()
	deadline := time.Now().Add(10 * time.Second)
	for st.refused.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("serve never retried the refused anchor")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, code := verify(); code != 3 {
		t.Fatalf("verify while the store still refuses: exit %d, want 3", code)
	}
	// ...and writes it once the store takes it again.
	st.refuse.Store(false)
	for {
		out, code = verify()
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("anchor not written after the store recovered: exit %d:\n%s", code, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "result: OK\n") || !strings.Contains(out, "(2 confirmed by their anchor in the store)") {
		t.Fatalf("verify after the retry:\n%s", out)
	}
}
