package catalog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"camvault/format/manifest"
)

// twoNodes opens the catalog a and b share (dsn), as nodes "a" and "b",
// with the camera cam1 registered.
func twoNodes(t *testing.T, e engine) (a, b *Catalog, dsn string) {
	t.Helper()
	dsn = e.dsn(t)
	var cats [2]*Catalog
	for i, node := range []string{"a", "b"} {
		c, err := Open(dsn, WithNode(node))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cats[i] = c
	}
	if err := cats[0].AddCamera(context.Background(), Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return cats[0], cats[1], dsn
}

func startOn(c *Catalog, session string, now time.Time) (SessionStarted, error) {
	return c.StartSession(context.Background(), SessionStart{Camera: "cam1", Officer: "o", Session: session, WrappedKey: []byte("k"),
		Now: now, Grace: time.Minute, Lease: 10 * time.Second})
}

func chunkOf(s SessionStarted, session string, seq uint64, wall time.Time) Chunk {
	return Chunk{Incident: s.Incident, Session: session, Track: "original", Seq: seq, Object: session + "/" + string(rune('a'+seq)),
		StartNS: int64(seq-1) * 2e9, EndNS: int64(seq) * 2e9, Wall: wall, RetainUntil: wall, PlainSHA256: "p", CipherSHA256: "c"}
}

func TestLeases(t *testing.T) { forEachEngine(t, testLeases) }

// testLeases: a session takes the camera's lease; another node is refused
// while it is live, also after a renewal pushed its expiry on; once it
// expired the other node takes the camera over, continuing the incident
// with the old session ended and a reconnect gap, and the old session's
// appends then fail with ErrLeaseLost; an ended session releases it.
func testLeases(t *testing.T, e engine) {
	ctx := context.Background()
	a, b, _ := twoNodes(t, e)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

	sa, err := startOn(a, "sa", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CommitChunk(ctx, chunkOf(sa, "sa", 1, t0)); err != nil {
		t.Fatal(err)
	}
	_, err = startOn(b, "sb", t0.Add(5*time.Second))
	var held *LeaseHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLeaseHeld) || held.Node != "a" || !strings.Contains(err.Error(), "recording on node a") {
		t.Fatalf("b while a's lease is live: %v, want a LeaseHeldError naming node a", err)
	}
	if err := b.LeaseHolder(ctx, "cam1", t0.Add(5*time.Second)); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("LeaseHolder on b: %v", err)
	}
	if err := a.LeaseHolder(ctx, "cam1", t0.Add(5*time.Second)); err != nil {
		t.Fatalf("LeaseHolder on a, the holder: %v", err)
	}
	// Renewed at 8 s: live to 18 s, so b is still refused at 15 s.
	if err := a.RenewLease(ctx, "cam1", "sa", t0.Add(8*time.Second), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := startOn(b, "sb", t0.Add(15*time.Second)); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("b after a renewed: %v, want ErrLeaseHeld", err)
	}
	if err := b.RenewLease(ctx, "cam1", "sb", t0.Add(15*time.Second), 10*time.Second); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("b renewing a lease it never had: %v", err)
	}

	// a stops renewing (it died); at 20 s its lease has expired.
	tb := t0.Add(20 * time.Second)
	sb, err := startOn(b, "sb", tb)
	if err != nil {
		t.Fatalf("takeover after expiry: %v", err)
	}
	if !sb.Resumed || sb.Incident != sa.Incident {
		t.Fatalf("takeover: %+v, want incident %s resumed", sb, sa.Incident)
	}
	for name, err := range map[string]error{
		"chunk":   func() error { _, err := a.CommitChunk(ctx, chunkOf(sa, "sa", 2, t0.Add(2*time.Second))); return err }(),
		"gap":     func() error { _, err := a.AppendRecord(ctx, gapOf(sa, "sa", tb)); return err }(),
		"end":     func() error { _, err := a.EndSession(ctx, sa.Incident, "sa", tb, StatusClosed, "teardown"); return err }(),
		"renewal": a.RenewLease(ctx, "cam1", "sa", tb, 10*time.Second),
	} {
		if !errors.Is(err, ErrLeaseLost) {
			t.Errorf("a's %s after the takeover: %v, want ErrLeaseLost", name, err)
		}
	}
	if _, err := b.CommitChunk(ctx, chunkOf(sb, "sb", 1, tb)); err != nil {
		t.Fatal(err)
	}
	// The chain: a's session, its chunk, its end (written by the taker,
	// at the lease's expiry), the reconnect gap from its last durable
	// footage, b's session and chunk; nothing of a after the takeover.
	recs := records(t, a, sa.Incident)
	var kinds []string
	for _, r := range recs {
		kinds = append(kinds, r.Kind+"/"+r.Session)
	}
	want := "session/sa chunk/sa end/sa gap/ session/sb chunk/sb"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("chain %s, want %s", got, want)
	}
	end, gap := recs[2], recs[3]
	if !strings.Contains(end.Note, "node a") || !strings.Contains(end.Note, "node b took the camera over") || !end.Wall.Equal(t0.Add(18*time.Second)) {
		t.Errorf("stale session's end: %+v", end)
	}
	if gap.FromSession != "sa" || gap.FromSeq != 1 || gap.ToWall == nil || !gap.ToWall.Equal(tb) {
		t.Errorf("takeover gap: %+v", gap)
	}
	// a back at restart: its session was settled by the takeover, and
	// b's is not a's to settle. (A SQLite catalog has one node, which
	// settles every session it finds running: no second node shares it.)
	if e.name == "postgres" {
		if got, err := a.InterruptRunning(ctx, tb.Add(time.Second)); err != nil || len(got) != 0 {
			t.Fatalf("a's crash reconciliation while b records: %v, %v; want nothing to settle", got, err)
		}
	}
	if _, err := startOn(a, "sa2", tb.Add(time.Second)); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("a while b holds the lease: %v, want ErrLeaseHeld", err)
	}
	if n := len(records(t, a, sa.Incident)); n != len(recs) {
		t.Fatalf("a's restart changed the chain: %d records, want %d", n, len(recs))
	}
	// b's session ends: the lease is released, and a may take the camera.
	if _, err := b.EndSession(ctx, sb.Incident, "sb", tb.Add(2*time.Second), StatusClosed, "teardown"); err != nil {
		t.Fatal(err)
	}
	if _, err := startOn(a, "sa3", tb.Add(3*time.Second)); err != nil {
		t.Fatalf("a after b released the lease: %v", err)
	}
}

func gapOf(s SessionStarted, session string, at time.Time) manifest.Record {
	return manifest.Record{Incident: s.Incident, Kind: manifest.KindGap, Session: session, Wall: at, Note: "lost"}
}

func records(t *testing.T, c *Catalog, incident string) []manifest.Record {
	t.Helper()
	lines, err := c.ManifestLines(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := manifest.VerifyChain(incident, lines)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestLeaseRace: two nodes start a session of one camera at the same
// moment, many times: exactly one wins each time, the other is refused
// with ErrLeaseHeld. On PostgreSQL only: several nodes share a catalog
// there, while a SQLite catalog belongs to its one node.
func TestLeaseRace(t *testing.T) {
	t.Parallel()
	a, b, _ := twoNodes(t, engines[1])
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for round := range 10 {
		now := t0.Add(time.Duration(round) * time.Minute) // every earlier lease has expired
		var wg sync.WaitGroup
		var errs [2]error
		var started [2]SessionStarted
		gate := make(chan struct{})
		for i, c := range []*Catalog{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				started[i], errs[i] = startOn(c, fmt.Sprintf("r%d-%s", round, c.Node()), now)
			}()
		}
		close(gate)
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
				if _, err := []*Catalog{a, b}[i].CommitChunk(context.Background(), chunkOf(started[i], fmt.Sprintf("r%d-%s", round, []*Catalog{a, b}[i].Node()), 1, now)); err != nil {
					t.Fatalf("round %d: the winner's chunk: %v", round, err)
				}
			case !errors.Is(err, ErrLeaseHeld):
				t.Fatalf("round %d: the loser's error %v, want ErrLeaseHeld", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d sessions started, want exactly 1 (errors %v)", round, won, errs)
		}
	}
}

func TestRegisterNode(t *testing.T) { forEachEngine(t, testRegisterNode) }

// testRegisterNode: a node registers its key, may start again with it,
// is refused with another; NodeKeys lists every node's; the store is
// recorded by the first node and another store refused.
func testRegisterNode(t *testing.T, e engine) {
	ctx := context.Background()
	a, b, dsn := twoNodes(t, e)
	pubA, _, _ := ed25519.GenerateKey(nil)
	pubB, _, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	if err := a.RegisterNode(ctx, pubA, now); err != nil {
		t.Fatal(err)
	}
	if err := a.RegisterNode(ctx, pubA, now.Add(time.Minute)); err != nil {
		t.Fatalf("the same key again: %v", err)
	}
	if err := b.RegisterNode(ctx, pubB, now); err != nil {
		t.Fatal(err)
	}
	other, err := Open(dsn, WithNode("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.RegisterNode(ctx, pubB, now); !errors.Is(err, ErrNodeKeyMismatch) {
		t.Fatalf("node a with b's key: %v, want ErrNodeKeyMismatch", err)
	}
	keys, err := b.NodeKeys(ctx)
	if err != nil || len(keys) != 2 || !keys["a"].Equal(pubA) || !keys["b"].Equal(pubB) {
		t.Fatalf("node keys %v, %v", keys, err)
	}
	if err := a.UseStore(ctx, "s3 bucket x"); err != nil {
		t.Fatal(err)
	}
	if err := b.UseStore(ctx, "s3 bucket x"); err != nil {
		t.Fatalf("the same store: %v", err)
	}
	if err := b.UseStore(ctx, "fs on h at /d"); !errors.Is(err, ErrStoreMismatch) || !strings.Contains(err.Error(), "s3 bucket x") {
		t.Fatalf("another store: %v, want ErrStoreMismatch naming the catalog's", err)
	}
}

// TestSQLiteNodeRenamedSettlesItsCrash: a SQLite catalog is its one
// node's whatever the node is called: a node restarted under another host
// name (a container's changes at every start) still settles the session
// its crash left running, and takes the camera at once.
func TestSQLiteNodeRenamedSettlesItsCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := engines[0].dsn(t)
	old, err := Open(dsn, WithNode("host-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.AddCamera(ctx, Camera{ID: "cam1", Officer: "o", SecretMAC: []byte("m"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	s, err := startOn(old, "s1", t0)
	if err != nil {
		t.Fatal(err)
	}
	old.Close() // the crash: s1 left running, its lease live
	c, err := Open(dsn, WithNode("host-2"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.InterruptRunning(ctx, t0.Add(time.Second)); err != nil || len(got) != 1 || got[0] != s.Incident {
		t.Fatalf("InterruptRunning after the rename: %v, %v; want %s settled", got, err, s.Incident)
	}
	if _, err := startOn(c, "s2", t0.Add(2*time.Second)); err != nil {
		t.Fatalf("the camera after the restart: %v", err)
	}
}
