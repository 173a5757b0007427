package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"camvault/catalog"
	"camvault/storage"
	"camvault/storage/fs"
)

type trail struct {
	dir   string
	cat   *catalog.Catalog
	store *fs.Store
	a     *Anchorer
	pub   ed25519.PublicKey
	db    *sql.DB // the catalog file opened directly, as whoever tampers would
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newTrail builds a trail of n records (views, a user added and disabled)
// and anchors its head.
func newTrail(t *testing.T, n int) *trail {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	store, err := fs.Open(filepath.Join(dir, "chunks"), fs.WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pub, priv, _ := ed25519.GenerateKey(nil)
	if err := cat.AddStaff(ctx, catalog.StaffUser{Name: "rita", Role: "reviewer", PasswordHash: "x"}, []byte("digest"), "admin", t0); err != nil {
		t.Fatal(err)
	}
	if err := cat.DisableStaff(ctx, "rita", "admin", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < n; i++ {
		if err := cat.AddAudit(ctx, t0.Add(time.Duration(i)*time.Second), "rita", "footage.viewed", "inc-1",
			map[string]any{"reason": fmt.Sprintf("case %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	a := &Anchorer{Catalog: cat, Store: store, Signer: priv, Now: func() time.Time { return t0.Add(time.Hour) }}
	h, ok, err := a.Anchor(ctx)
	if err != nil || !ok || h.Index != uint64(n) {
		t.Fatalf("anchor = %+v %v %v, want index %d", h, ok, err, n)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "catalog.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &trail{dir, cat, store, a, pub, db}
}

func (tr *trail) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := tr.db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (tr *trail) verify(t *testing.T) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), tr.cat, tr.store, tr.pub)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// wantProblem asserts the report failed with a problem at record (0: none)
// whose message contains want.
func wantProblem(t *testing.T, rep *Report, record uint64, want string) {
	t.Helper()
	for _, p := range rep.Problems {
		at := uint64(0)
		if p.Record != nil {
			at = *p.Record
		}
		if at == record && strings.Contains(p.Message, want) {
			return
		}
	}
	t.Fatalf("no problem at record %d saying %q in %+v", record, want, rep.Problems)
}

func TestUntouchedTrailVerifies(t *testing.T) {
	tr := newTrail(t, 6)
	// Records added after the anchor are covered by the chain, not yet a head.
	if err := tr.cat.AddAudit(context.Background(), t0, "rita", "login", "", nil); err != nil {
		t.Fatal(err)
	}
	rep := tr.verify(t)
	if !rep.OK() || rep.Records != 7 || rep.CatalogHeads != 1 || rep.Anchored != 1 || rep.Covered != 6 {
		t.Fatalf("report %+v", rep)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "7 records") || !strings.HasSuffix(b.String(), "OK\n") {
		t.Fatalf("text %q", b.String())
	}
}

func TestEditedRecordIsNamed(t *testing.T) {
	tr := newTrail(t, 6)
	var line string
	if err := tr.db.QueryRow(`SELECT line FROM audit WHERE id = 3`).Scan(&line); err != nil {
		t.Fatal(err)
	}
	tr.exec(t, `UPDATE audit SET line = ? WHERE id = 3`, strings.Replace(line, "case", "routine", 1))
	rep := tr.verify(t)
	wantProblem(t, rep, 3, "edited")
	if len(rep.Problems) != 1 {
		t.Fatalf("one edit, problems %+v", rep.Problems)
	}

	// Whoever also fixes the stored hash breaks the next record's link and
	// the signed head.
	tr2 := newTrail(t, 6)
	if err := tr2.db.QueryRow(`SELECT line FROM audit WHERE id = 3`).Scan(&line); err != nil {
		t.Fatal(err)
	}
	line = strings.Replace(line, "case", "rout", 1)
	tr2.exec(t, `UPDATE audit SET line = ?, hash = ? WHERE id = 3`, line, hashOf([]byte(line)))
	wantProblem(t, tr2.verify(t), 4, "prev does not match record 3")
}

func TestEditedRecordWithFixedHashIsCaught(t *testing.T) {
	tr := newTrail(t, 6)
	rows, err := tr.cat.AuditRows(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the last record consistently (line and hash): only the signed
	// head can tell.
	var rec catalog.AuditRecord
	if err := json.Unmarshal(rows[5].Line, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Actor = "nobody"
	line, _ := json.Marshal(rec)
	tr.exec(t, `UPDATE audit SET line = ?, hash = ? WHERE id = 6`, line, hashOf(line))
	rep := tr.verify(t)
	wantProblem(t, rep, 6, "differs from the signed head in the catalog")
	wantProblem(t, rep, 6, "differs from the head anchored in the store")
}

func TestDeletedMiddleRecordIsNamed(t *testing.T) {
	tr := newTrail(t, 6)
	tr.exec(t, `DELETE FROM audit WHERE id = 4`)
	rep := tr.verify(t)
	wantProblem(t, rep, 5, "records 4..4 missing (deleted)")
	tr.exec(t, `DELETE FROM audit WHERE id = 1`)
	wantProblem(t, tr.verify(t), 2, "records 1..1 missing")
}

func TestTruncatedTailIsCaught(t *testing.T) {
	tr := newTrail(t, 6)
	tr.exec(t, `DELETE FROM audit WHERE id >= 4`)
	rep := tr.verify(t)
	wantProblem(t, rep, 0, "tail truncated: records 4..6 missing (a signed head in the catalog covers 6 records, only 3 remain)")
	wantProblem(t, rep, 0, "tail truncated: records 4..6 missing (a head anchored in the store")

	// Deleting the catalog's heads too leaves the anchor.
	tr.exec(t, `DELETE FROM audit_heads`)
	rep = tr.verify(t)
	wantProblem(t, rep, 6, "catalog lacks the signed head")
	wantProblem(t, rep, 0, "tail truncated: records 4..6 missing (a head anchored in the store")

	// Everything deleted.
	tr.exec(t, `DELETE FROM audit`)
	wantProblem(t, tr.verify(t), 0, "records 1..6 missing")
}

func TestForgedHeadIsRefused(t *testing.T) {
	tr := newTrail(t, 6)
	ctx := context.Background()
	_, other, _ := ed25519.GenerateKey(nil)
	rows, _ := tr.cat.AuditRows(ctx)
	forged := Head{Index: 3, Head: hashOf(rows[2].Line), Time: t0}
	forged.Sign(other)
	line, _ := json.Marshal(&forged)
	if err := tr.cat.AddAuditHead(ctx, 3, line); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, tr.verify(t), 0, "signed head in the catalog: audit head at record 3: audit head signature does not verify")

	// A catalog head re-signed with the node key (taken from the disk) after
	// a truncation still disagrees with the anchor the store keeps.
	tr2 := newTrail(t, 6)
	tr2.exec(t, `DELETE FROM audit WHERE id = 6`)
	rows, _ = tr2.cat.AuditRows(ctx)
	resigned := Head{Index: 6, Head: hashOf(rows[4].Line), Time: t0}
	resigned.Sign(tr2.a.Signer)
	line, _ = json.Marshal(&resigned)
	tr2.exec(t, `UPDATE audit_heads SET line = ? WHERE idx = 6`, line)
	wantProblem(t, tr2.verify(t), 6, "disagrees with its anchor in the store (catalog head rewritten)")
}

func TestAnchorIsWriteOnce(t *testing.T) {
	tr := newTrail(t, 3)
	ctx := context.Background()
	// No growth: nothing to sign.
	if _, ok, err := tr.a.Anchor(ctx); ok || err != nil {
		t.Fatalf("anchor without growth = %v %v", ok, err)
	}
	// The store refuses a second object at the same index, and its deletion.
	err := tr.store.Put(ctx, AnchorKey(3), []byte(`{}`), t0.Add(AnchorRetention))
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second anchor at index 3: %v", err)
	}
	if err := tr.store.Delete(ctx, AnchorKey(3)); !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("delete anchor: %v", err)
	}
	// A restarted node signing the same length finds the anchor there.
	again := &Anchorer{Catalog: tr.cat, Store: tr.store, Signer: tr.a.Signer, Now: func() time.Time { return t0.Add(2 * time.Hour) }}
	if _, ok, err := again.Anchor(ctx); !ok || err != nil {
		t.Fatalf("re-anchor = %v %v", ok, err)
	}
	if rep := tr.verify(t); !rep.OK() || rep.Anchored != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestAnchorRefusesBrokenTrail(t *testing.T) {
	tr := newTrail(t, 4)
	tr.exec(t, `DELETE FROM audit WHERE id = 2`)
	if err := tr.cat.AddAudit(context.Background(), t0, "rita", "login", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.a.Anchor(context.Background()); !errors.Is(err, ErrBroken) {
		t.Fatalf("anchor of a broken trail: %v", err)
	}
}

func TestHeadSignatureCoversEveryField(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	h := Head{Index: 5, Head: strings.Repeat("ab", 32), Time: t0}
	h.Sign(priv)
	if err := h.Verify(pub); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Head){
		func(h *Head) { h.Index++ },
		func(h *Head) { h.Head = strings.Repeat("cd", 32) },
		func(h *Head) { h.Time = h.Time.Add(time.Nanosecond) },
		func(h *Head) { h.Signature = "!" },
	} {
		c := h
		mut(&c)
		if err := c.Verify(pub); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("mutated head %+v verified: %v", c, err)
		}
	}
}

func hashOf(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// TestRunAnchorsWhenTheTrailGrows: the periodic signer anchors a new head
// once records were added, and nothing while the trail stays the same.
func TestRunAnchorsWhenTheTrailGrows(t *testing.T) {
	tr := newTrail(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.a.Run(ctx, 5*time.Millisecond, nil)
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(30 * time.Millisecond)
	if heads, _ := tr.cat.AuditHeadLines(ctx); len(heads) != 1 {
		t.Fatalf("%d heads without growth, want 1", len(heads))
	}
	if err := tr.cat.AddAudit(ctx, t0, "rita", "login", "", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := tr.store.List(ctx, AnchorDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 2 && keys[1] == AnchorKey(3) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("anchors %v, want heads 2 and 3", keys)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rep := tr.verify(t); !rep.OK() || rep.Covered != 3 || rep.Anchored != 2 || rep.CatalogHeads != 2 {
		t.Fatalf("report %+v", rep)
	}
}
