package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"camvault/format/chunk"
	"camvault/format/manifest"
)

const testIncident = "inc-test"

var testWall = time.Date(2026, 11, 27, 10, 15, 0, 0, time.UTC)

// writeTestBundle writes recs as an export bundle as a node would, buggy
// or not: every chunk record's chunk sealed and stored under chunks/,
// the records chained, and the chain's head signed. Only the records'
// content is the caller's; index, prev and hashes are made valid.
func writeTestBundle(t testing.TB, recs []manifest.Record) (string, ed25519.PublicKey) {
	dir, pub, _ := writeTestBundleKeys(t, recs)
	return dir, pub
}

// writeTestBundleKeys is writeTestBundle, also returning the identity the
// session keys in keys.json are wrapped to.
func writeTestBundleKeys(t testing.TB, recs []manifest.Record) (string, ed25519.PublicKey, *age.X25519Identity) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	id, _ := age.GenerateX25519Identity()
	keys := map[string]*chunk.SessionKey{}
	var chain manifest.Chain
	var lines []byte
	for i := range recs {
		r := recs[i]
		r.Index, r.Incident = uint64(i), testIncident
		if r.Kind == manifest.KindChunk {
			k := keys[r.Session]
			if k == nil {
				var err error
				if k, err = chunk.NewSessionKey([]age.Recipient{id.Recipient()}); err != nil {
					t.Fatal(err)
				}
				keys[r.Session] = k
			}
			h := chunk.Header{Incident: testIncident, Session: r.Session, Track: r.Track, Seq: r.Seq, StartNS: r.StartNS, EndNS: r.EndNS,
				Wall: r.Wall, RetainUntil: r.Wall.Add(time.Hour), Codec: "fmp4:h264"}
			sealed, err := k.Seal(h, []byte(fmt.Sprintf("segment %s/%s/%d", r.Session, r.Track, r.Seq)))
			if err != nil {
				t.Fatal(err)
			}
			r.Object = chunk.ObjectKey(h)
			r.CipherSHA256 = hex.EncodeToString(sealed.CipherSHA256[:])
			r.PlainSHA256 = hex.EncodeToString(sealed.PlainSHA256[:])
			p := filepath.Join(dir, BundleChunks, filepath.FromSlash(r.Object))
			os.MkdirAll(filepath.Dir(p), 0o700)
			if err := os.WriteFile(p, sealed.Bytes, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		line, _, err := chain.Append(&r)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(append(lines, line...), '\n')
	}
	cp := manifest.Checkpoint{Incident: testIncident, Index: uint64(max(len(recs)-1, 0)), Head: chain.Head(), Time: testWall}
	cp.Sign(priv)
	cpl, _ := json.Marshal(&cp)
	info, _ := json.Marshal(map[string]string{"id": testIncident})
	wrapped := map[string][]byte{}
	for s, k := range keys {
		wrapped[s] = k.Wrapped()
	}
	kj, _ := json.Marshal(wrapped)
	for name, data := range map[string][]byte{
		BundleManifest: lines, BundleCheckpoints: append(cpl, '\n'), BundleInfo: info, BundleKeys: kj,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, pub, id
}

const segDur = int64(2 * time.Second)

// segRec is the chunk record of segment seq (≥ 1) of a session cut into
// 2 s segments, or the init segment for seq 0.
func segRec(session, track string, seq uint64) manifest.Record {
	r := manifest.Record{Kind: manifest.KindChunk, Session: session, Track: track, Seq: seq, Wall: testWall}
	if seq > 0 {
		r.StartNS, r.EndNS = int64(seq-1)*segDur, int64(seq)*segDur
		r.Wall = testWall.Add(time.Duration(r.StartNS))
	}
	return r
}

// session is one whole session: its record, original seq 0..n, its end.
func session(id string, n uint64) []manifest.Record {
	out := []manifest.Record{{Kind: manifest.KindSession, Session: id, Wall: testWall}}
	for s := uint64(0); s <= n; s++ {
		out = append(out, segRec(id, chunk.TrackOriginal, s))
	}
	return append(out, manifest.Record{Kind: manifest.KindEnd, Session: id, Wall: testWall.Add(time.Duration(n) * 2 * time.Second), Note: "closed: teardown"})
}

func gapFor(session, track string, seq uint64, from, to int64, note string) manifest.Record {
	f, tw := testWall.Add(time.Duration(from)), testWall.Add(time.Duration(to))
	return manifest.Record{Kind: manifest.KindGap, Session: session, Track: track, Seq: seq, StartNS: from, EndNS: to,
		FromWall: &f, ToWall: &tw, Wall: testWall, Note: note}
}

// without removes the original chunks seq lo..hi of session s, putting
// the extra records where the first one was.
func without(recs []manifest.Record, s string, lo, hi uint64, extra ...manifest.Record) []manifest.Record {
	var out []manifest.Record
	for _, r := range recs {
		if r.Kind == manifest.KindChunk && r.Session == s && r.Track == chunk.TrackOriginal && r.Seq >= lo && r.Seq <= hi {
			if r.Seq == lo {
				out = append(out, extra...)
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// shifted moves the media time of session s's original chunks from seq
// on by d, as a node that skipped footage without a record would.
func shifted(recs []manifest.Record, s string, from uint64, d time.Duration) []manifest.Record {
	out := slices.Clone(recs)
	for i := range out {
		if r := &out[i]; r.Kind == manifest.KindChunk && r.Session == s && r.Seq >= from {
			r.StartNS += int64(d)
			r.EndNS += int64(d)
			r.Wall = r.Wall.Add(d)
		}
	}
	return out
}

// withDerived adds, after each original media chunk, its proxy and thumb
// chunk (the proxy init before the first proxy), except for skip, where
// the replacement records (gaps, or nothing) go.
func withDerived(recs []manifest.Record, skip map[string]uint64, replace ...manifest.Record) []manifest.Record {
	var out []manifest.Record
	for _, r := range recs {
		out = append(out, r)
		if r.Kind != manifest.KindChunk || r.Track != chunk.TrackOriginal || r.Seq == 0 {
			continue
		}
		for _, tr := range []string{chunk.TrackProxy, chunk.TrackThumb} {
			if seq, ok := skip[tr]; ok && seq == r.Seq {
				out = append(out, replace...)
				continue
			}
			if tr == chunk.TrackProxy && r.Seq == 1 {
				out = append(out, segRec(r.Session, tr, 0))
			}
			out = append(out, segRec(r.Session, tr, r.Seq))
		}
	}
	return out
}

func verifyRecords(t *testing.T, recs []manifest.Record) *Report {
	t.Helper()
	dir, pub := writeTestBundle(t, recs)
	return verifyDir(t, dir, pub)
}

// verifyDir verifies the bundle in dir without an identity.
func verifyDir(t *testing.T, dir string, pub ed25519.PublicKey) *Report {
	t.Helper()
	src, err := OpenBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), src, KeysOf(pub), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestVerifyCompleteness: verify fails a manifest whose chain and
// signatures are valid but which lacks records no gap accounts for, as a
// node that could not write them (a full disk) and went on would leave:
// missing sequence numbers, media time skipped, a session without its
// reconnect gap, derived chunks neither stored nor shed. The same holes
// with the gap records that camvault writes for them pass.
func TestVerifyCompleteness(t *testing.T) {
	const s1, s2 = "ses1", "ses2"
	orig := chunk.TrackOriginal
	base := session(s1, 10)
	reconnect := manifest.Record{Kind: manifest.KindGap, Wall: testWall, Note: "reconnect after 4s"}
	twoSessions := append(slices.Clone(base), append([]manifest.Record{reconnect}, session(s2, 3)...)...)
	noGapBetween := append(slices.Clone(base), session(s2, 3)...)
	crash := manifest.Record{Kind: manifest.KindGap, Session: s1, Seq: 11, StartNS: 20 * segDur / 2, EndNS: 30 * segDur / 2, Wall: testWall, Note: "server stopped"}
	for _, c := range []struct {
		name string
		recs []manifest.Record
		want string // "" passes
	}{
		{"complete", base, ""},
		{"seq hole", without(base, s1, 4, 6), "session ses1 track original: original/4..6 missing: media time 6.000 s to 12.000 s (6s, wall clock 2026-11-27T10:15:06Z to 2026-11-27T10:15:12Z)"},
		{"one seq missing", without(base, s1, 9, 9), "original/9 missing"},
		{"init missing", without(base, s1, 0, 0), "original/0 missing"},
		{"seq hole, a gap each", without(base, s1, 4, 6,
			gapFor(s1, orig, 4, 6*1e9, 8*1e9, "segment lost"), gapFor(s1, orig, 5, 8*1e9, 10*1e9, "segment lost"), gapFor(s1, orig, 6, 10*1e9, 12*1e9, "segment lost")), ""},
		{"seq hole, one gap for all", without(base, s1, 4, 6, gapFor(s1, orig, 4, 6*1e9, 12*1e9, "server stopped before segments 4..6 were stored")), ""},
		{"seq hole, gap too short", without(base, s1, 4, 6, gapFor(s1, orig, 4, 6*1e9, 8*1e9, "segment lost")), "original/4..6 missing"},
		{"seq hole, gap of another session", without(base, s1, 4, 6, gapFor(s2, orig, 4, 6*1e9, 12*1e9, "segment lost")), "original/4..6 missing"},
		{"seq hole, gap of a derived track", without(withDerived(base, nil), s1, 4, 6, gapFor(s1, chunk.TrackProxy, 4, 6*1e9, 12*1e9, "derived work shed: x")), "original/4..6 missing"},
		{"seq hole, range-less gap in place", without(base, s1, 4, 6, manifest.Record{Kind: manifest.KindGap, Session: s1, Wall: testWall, Note: "old gap"}), ""},
		{"seq hole, range-less gap elsewhere", append(without(base, s1, 4, 6), manifest.Record{Kind: manifest.KindGap, Session: s1, Wall: testWall, Note: "old gap"}), "original/4..6 missing"},
		{"time skipped", shifted(base, s1, 5, 3*time.Second), "session ses1 track original: no sequence number is missing but media time 8.000 s to 11.000 s (3s"},
		{"time skipped, lost media gap", append(shifted(base, s1, 5, 3*time.Second), gapFor(s1, orig, 5, 8*1e9, 11*1e9, "media lost in transit")), ""},
		{"time within tolerance", shifted(base, s1, 5, TimeTolerance), ""},
		{"time just beyond tolerance", shifted(base, s1, 5, TimeTolerance+time.Microsecond), "no sequence number is missing but media time"},
		{"crash at the tail", append(slices.Clone(base[:len(base)-1]), crash, base[len(base)-1]), ""},
		{"two sessions", twoSessions, ""},
		{"second session without its gap", noGapBetween, "session ses2 continues the incident without a gap record before it"},
		{"derived complete", withDerived(base, nil), ""},
		{"proxy missing", withDerived(base, map[string]uint64{chunk.TrackProxy: 3}), "session ses1 track proxy: no chunk and no gap record for seq 3"},
		{"proxy shed", withDerived(base, map[string]uint64{chunk.TrackProxy: 3}, gapFor(s1, chunk.TrackProxy, 3, 4*1e9, 6*1e9, "derived work shed: transcode queue full")), ""},
		{"thumb missing", withDerived(base, map[string]uint64{chunk.TrackThumb: 7}), "track thumb: no chunk and no gap record for seq 7"},
		{"proxy init missing", withDerived(base, map[string]uint64{chunk.TrackProxy: 1}, segRec(s1, chunk.TrackProxy, 1)), "track proxy: no chunk and no gap record for seq 0"},
		{"derived lost in a crash", append(withDerived(base[:len(base)-2], nil), base[len(base)-2], crash, base[len(base)-1]), ""},
		{"no derived at all", base, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := verifyRecords(t, c.recs)
			got := fmt.Sprint(rep.Problems)
			switch {
			case c.want == "" && !rep.OK():
				t.Fatalf("want OK, got %s", got)
			case c.want != "" && (rep.OK() || !strings.Contains(got, c.want)):
				t.Fatalf("want a problem with %q, got %s", c.want, got)
			case c.want != "" && len(rep.Problems) != 1:
				t.Fatalf("want one problem, got %d: %s", len(rep.Problems), got)
			}
		})
	}
}
