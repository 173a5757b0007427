package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"camvault/catalog"
	"camvault/internal/pgtest"
)

// TestWritersOnTwoNodes: audit records appended at once through two
// catalogs sharing one PostgreSQL database make one valid chain, every
// record in it, and the two nodes' signers (one at a time, by the lock)
// sign heads of that chain that verify.
func TestWritersOnTwoNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewCatalog(t)
	ctx := context.Background()
	pub, priv, _ := ed25519.GenerateKey(nil)
	var cats []*catalog.Catalog
	for range 2 {
		c, err := catalog.Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cats = append(cats, c)
	}
	const writers, each = 4, 15
	var wg sync.WaitGroup
	for w := range writers {
		c := cats[w%2]
		a := &Anchorer{Catalog: c, Signer: priv, Now: time.Now, Lock: c}
		wg.Go(func() {
			for i := range each {
				if err := c.AddAudit(ctx, time.Now(), fmt.Sprintf("user%d", w), "footage.view", "", map[string]any{"i": i}); err != nil {
					t.Error(err)
					return
				}
				if i%5 == 4 {
					if _, _, err := a.Anchor(ctx); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	rows, err := cats[0].AuditRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != writers*each {
		t.Fatalf("%d records, want %d", len(rows), writers*each)
	}
	heads, err := cats[1].AuditHeadLines(ctx)
	if err != nil || len(heads) == 0 {
		t.Fatalf("%d heads signed, %v", len(heads), err)
	}
	if rep := Check(rows, heads, nil, pub); !rep.OK() {
		t.Fatalf("the trail written by two nodes does not verify: %+v", rep.Problems)
	}
}
