package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/prometheus/client_golang/prometheus"

	"camvault/camera"
	"camvault/catalog"
	"camvault/evidence"
	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/ingest"
	"camvault/internal/testenv"
	"camvault/keys"
	"camvault/media"
	"camvault/stages/commit"
	"camvault/stages/transcode"
	"camvault/storage"
	"camvault/storage/fs"
)

// h264Clip is an H.264 camera's pictures (no B-frames, an IDR every 2 s),
// made by the ffmpeg CLI.
type h264Clip struct {
	sps, pps []byte
	frames   [][][]byte // NAL units per picture, 30 fps
}

var clips sync.Map // "WxH/seconds" -> *h264Clip, shared by the tests

func makeH264Clip(t testing.TB, size string, seconds int) *h264Clip {
	t.Helper()
	testenv.Require(t, "ffmpeg", "ffprobe")
	key := size + "/" + strconv.Itoa(seconds)
	if c, ok := clips.Load(key); ok {
		return c.(*h264Clip)
	}
	path := filepath.Join(t.TempDir(), "clip.h264")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size="+size+":rate=30", "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "0",
		"-b:v", "2M", "-pix_fmt", "yuv420p", "-f", "h264", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	c := &h264Clip{}
	var au [][]byte
	for _, n := range nalus {
		typ := h264.NALUType(n[0] & 0x1f)
		switch typ {
		case h264.NALUTypeSPS:
			c.sps = n
		case h264.NALUTypePPS:
			c.pps = n
		case h264.NALUTypeAccessUnitDelimiter:
			continue
		}
		au = append(au, n)
		if typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR {
			c.frames = append(c.frames, au)
			au = nil
		}
	}
	if len(c.frames) != seconds*30 || c.sps == nil || c.pps == nil {
		t.Fatalf("clip has %d pictures", len(c.frames))
	}
	clips.Store(key, c)
	return c
}

func (c *h264Clip) tracks() []media.Track {
	return []media.Track{{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: c.sps, PPS: c.pps}}
}

// unit returns picture i as the camera delivers it, received at recv.
func (c *h264Clip) unit(i int, recv time.Time) *media.AccessUnit {
	key := h264.NALUType(c.frames[i][0][0]&0x1f) == h264.NALUTypeIDR || h264.NALUType(c.frames[i][0][0]&0x1f) == h264.NALUTypeSPS
	return &media.AccessUnit{Track: 0, PTS: int64(i) * 3000, DTS: int64(i) * 3000, Key: key, NALUs: c.frames[i], Received: recv}
}

// rig is a real recorder on a real catalog, fs store and keys.
type rig struct {
	ctx  context.Context
	data string
	cat  *catalog.Catalog
	st   *fs.Store
	rec  *Recorder
	ids  []age.Identity
	pub  ed25519.PublicKey
	reg  *prometheus.Registry
}

func newRig(t testing.TB, cfg Config, cameras ...string) *rig {
	t.Helper()
	return newRigWithStore(t, cfg, nil, cameras...)
}

// newRigWithStore is newRig with the recorder's chunk store wrapped (to
// make it fail, say); the rig's st stays the fs store underneath.
func newRigWithStore(t testing.TB, cfg Config, wrap func(*fs.Store) storage.ChunkStore, cameras ...string) *rig {
	t.Helper()
	return newRigWithFS(t, cfg, nil, wrap, cameras...)
}

// newRigWithFS is newRigWithStore with the fs store opened with opts.
func newRigWithFS(t testing.TB, cfg Config, opts []fs.Option, wrap func(*fs.Store) storage.ChunkStore, cameras ...string) *rig {
	t.Helper()
	r := &rig{ctx: context.Background(), data: t.TempDir(), reg: prometheus.NewRegistry()}
	keyDir := keys.Dir(r.data)
	if err := keys.Generate(keyDir); err != nil {
		t.Fatal(err)
	}
	recipients, err := keys.LoadRecipients(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.LoadSigner(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	if r.ids, err = keys.LoadIdentity(filepath.Join(keyDir, keys.IdentityFile)); err != nil {
		t.Fatal(err)
	}
	if r.pub, err = keys.LoadNodePublic(filepath.Join(keyDir, keys.NodePubFile)); err != nil {
		t.Fatal(err)
	}
	if r.cat, err = catalog.Open(filepath.Join(r.data, "catalog.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cat.Close() })
	if r.st, err = fs.Open(filepath.Join(r.data, "chunks"), opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.st.Close() })
	for _, cam := range cameras {
		if err := r.cat.AddCamera(r.ctx, catalog.Camera{ID: cam, Officer: "officer", SecretMAC: []byte("mac"), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	var chunks storage.ChunkStore = r.st
	if wrap != nil {
		chunks = wrap(r.st)
	}
	if r.rec, err = New(cfg, r.cat, chunks, recipients, signer, r.reg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	return r
}

// opened is one incident read back: its manifest and every chunk
// decrypted.
type opened struct {
	id      string
	records []manifest.Record
	plain   map[string][]byte       // "track/seq" -> plaintext
	headers map[string]chunk.Header // "track/seq" -> chunk header
	gaps    map[string]string       // "track/seq" -> note, derived gaps only
	report  *evidence.Report
}

func (r *rig) open(t testing.TB, camera string) *opened {
	t.Helper()
	incs, err := r.cat.Incidents(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := &opened{plain: map[string][]byte{}, headers: map[string]chunk.Header{}, gaps: map[string]string{}}
	for _, in := range incs {
		if in.Camera == camera {
			o.id = in.ID
		}
	}
	if o.id == "" {
		t.Fatalf("no incident of %s", camera)
	}
	src := &evidence.CatalogSource{Catalog: r.cat, Store: r.st, ID: o.id}
	rep, err := evidence.Verify(r.ctx, src, evidence.KeysOf(r.pub), r.ids)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("incident %s fails verification: %v", o.id, rep.Problems)
	}
	o.report = rep
	lines, err := r.cat.ManifestLines(r.ctx, o.id)
	if err != nil {
		t.Fatal(err)
	}
	o.records, _, err = manifest.VerifyChain(o.id, lines)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := r.cat.WrappedKeys(r.ctx, o.id)
	if err != nil {
		t.Fatal(err)
	}
	openers := map[string]*chunk.Opener{}
	for sid, w := range wrapped {
		if openers[sid], err = chunk.UnwrapSessionKey(w, r.ids...); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range o.records {
		k := fmt.Sprintf("%s/%d", rec.Track, rec.Seq)
		switch rec.Kind {
		case manifest.KindGap:
			if rec.Track != "" && rec.Track != chunk.TrackOriginal {
				if _, dup := o.gaps[k]; dup {
					t.Fatalf("two gap records for %s", k)
				}
				o.gaps[k] = rec.Note
			}
		case manifest.KindChunk:
			b, err := src.Chunk(r.ctx, rec.Object)
			if err != nil {
				t.Fatal(err)
			}
			h, pt, err := openers[rec.Session].Open(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := o.plain[k]; dup {
				t.Fatalf("two chunks for %s", k)
			}
			if want := chunk.ObjectKey(chunk.Header{Incident: o.id, Session: rec.Session, Track: rec.Track, Seq: rec.Seq}); rec.Object != want {
				t.Fatalf("object %q, want %q", rec.Object, want)
			}
			o.plain[k], o.headers[k] = pt, h
		}
	}
	return o
}

// originals returns the number of original media chunks (seq ≥ 1).
func (o *opened) originals() int {
	n := 0
	for k := range o.plain {
		if strings.HasPrefix(k, chunk.TrackOriginal+"/") && k != chunk.TrackOriginal+"/0" {
			n++
		}
	}
	return n
}

// checkDerivedAlignment: every original media chunk N has, on each derived
// track, either chunk N with the original's time range and deadline, or a
// gap record; a proxy chunk implies the proxy init; the session's end
// record comes after all of them.
func (o *opened) checkDerivedAlignment(t testing.TB) {
	t.Helper()
	n := o.originals()
	if n == 0 {
		t.Fatal("no original chunks")
	}
	for seq := 1; seq <= n; seq++ {
		orig, ok := o.headers[fmt.Sprintf("original/%d", seq)]
		if !ok {
			t.Fatalf("original chunk %d missing", seq)
		}
		for _, track := range []string{chunk.TrackProxy, chunk.TrackThumb} {
			k := fmt.Sprintf("%s/%d", track, seq)
			h, stored := o.headers[k]
			_, gap := o.gaps[k]
			if stored == gap {
				t.Fatalf("%s: chunk %v, gap %v (want exactly one)", k, stored, gap)
			}
			if !stored {
				continue
			}
			if h.StartNS != orig.StartNS || h.EndNS != orig.EndNS || !h.RetainUntil.Equal(orig.RetainUntil) || !h.Wall.Equal(orig.Wall) ||
				h.Session != orig.Session || h.Incident != orig.Incident {
				t.Fatalf("%s header %+v does not line up with original %+v", k, h, orig)
			}
			want := map[string]string{chunk.TrackProxy: transcode.ProxyCodec, chunk.TrackThumb: transcode.ThumbCodec}[track]
			if h.Codec != want {
				t.Fatalf("%s codec %q", k, h.Codec)
			}
			if track == chunk.TrackProxy {
				if _, ok := o.plain["proxy/0"]; !ok {
					t.Fatalf("%s without the proxy init", k)
				}
			}
		}
	}
	last := o.records[len(o.records)-1]
	if last.Kind != manifest.KindEnd {
		t.Fatalf("last record is a %s, want the session end", last.Kind)
	}
}

// fakeRenderer derives bytes from the segment it is given, so the test
// can check that a derived chunk came from the right original's
// plaintext; it waits on gate while it is open, and fails the proxy of
// segment failSeq.
type fakeRenderer struct {
	gate    chan struct{}
	failSeq uint32
	started chan string // if set, gets "kind seq" as each call starts
}

func (f *fakeRenderer) start(kind string, seg []byte) {
	if f.started != nil {
		f.started <- fmt.Sprintf("%s %d", kind, mfhdSeq(seg))
	}
	<-f.gate
}

// mfhdSeq reads an fMP4 media segment's sequence number.
func mfhdSeq(seg []byte) uint32 {
	i := bytes.Index(seg, []byte("mfhd"))
	if i < 0 || len(seg) < i+12 {
		return 0
	}
	return binary.BigEndian.Uint32(seg[i+8:])
}

func fakeDigest(kind string, seg []byte) []byte {
	sum := sha256.Sum256(seg)
	return fmt.Appendf(nil, "%s of %x", kind, sum[:8])
}

func (f *fakeRenderer) Proxy(_ context.Context, init, seg []byte) ([]byte, []byte, error) {
	f.start("proxy", seg)
	if mfhdSeq(seg) == f.failSeq {
		return nil, nil, errors.New("decode: invalid NAL unit size")
	}
	return []byte("proxy init"), fakeDigest("proxy", seg), nil
}

func (f *fakeRenderer) Thumbnail(_ context.Context, _, seg []byte) ([]byte, error) {
	f.start("thumb", seg)
	return fakeDigest("jpeg", seg), nil
}

// TestDerivedTracksWithDouble records a session with a stand-in renderer
// that is stuck while the camera streams: derived work is shed into gap
// records (one transcode.shed alert), a renderer failure is a gap, what
// was made is sealed as proxy/thumb chunks of the original's plaintext
// with its time range and deadline, the end record comes last, and the
// incident verifies.
func TestDerivedTracksWithDouble(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 12)
	f := &fakeRenderer{gate: make(chan struct{}), failSeq: 1}
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Workers: 1, Queue: 1, Renderer: f}}, "cam-d")
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-d", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range clip.frames {
		if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("feeding took %v with the renderer stuck: ingest waited for transcoding", d)
	}
	close(f.gate)
	// Everything accepted is rendered before the end (segments 1-5 are
	// cut; 6 is cut at the end), so no job is shed for the end.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := metricSum(t, r.reg, "camvault_transcode_jobs_total") + metricSum(t, r.reg, "camvault_transcode_errors_total") +
			metricSum(t, r.reg, "camvault_transcode_shed_total")
		if n == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of 10 jobs accounted for", n)
		}
	}
	sess.End(ingest.EndTeardown, nil)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}

	o := r.open(t, "cam-d")
	if n := o.originals(); n != 6 {
		t.Fatalf("%d original chunks, want 6", n)
	}
	o.checkDerivedAlignment(t)
	shed, failed := 0, 0
	for k, note := range o.gaps {
		switch {
		case note == "derived work shed: transcode queue full":
			shed++
		case k == "proxy/1" && strings.HasPrefix(note, "derived work failed: proxy: decode: invalid NAL unit size"):
			failed++
		default:
			t.Fatalf("gap %s: %q", k, note)
		}
	}
	if shed == 0 || failed != 1 {
		t.Fatalf("%d shed, %d failed gaps: %v", shed, failed, o.gaps)
	}
	made := 0
	for k, pt := range o.plain {
		track, seq, _ := strings.Cut(k, "/")
		if track == chunk.TrackOriginal || k == "proxy/0" {
			continue
		}
		made++
		kind := map[string]string{chunk.TrackProxy: "proxy", chunk.TrackThumb: "jpeg"}[track]
		if want := fakeDigest(kind, o.plain["original/"+seq]); !bytes.Equal(pt, want) {
			t.Fatalf("%s is %q, not made from original chunk %s", k, pt, seq)
		}
	}
	// The last segment, cut at the end, is always rendered.
	if _, ok := o.plain["thumb/6"]; !ok || made < 2 {
		t.Fatalf("made %d derived chunks, thumb/6 present %v", made, ok)
	}
	if got := string(o.plain["proxy/0"]); got != "proxy init" {
		t.Fatalf("proxy init %q", got)
	}
	if o.report.Derived != made+1 || o.report.Chunks != 7+made+1 {
		t.Fatalf("report: %d chunks, %d derived; want %d derived", o.report.Chunks, o.report.Derived, made+1)
	}
	var text bytes.Buffer
	o.report.WriteText(&text)
	if !strings.Contains(text.String(), fmt.Sprintf("derived: %d of the chunks are review proxies and thumbnails", made+1)) ||
		!strings.Contains(text.String(), "derived proxy/1: derived work failed") || !strings.Contains(text.String(), "result: OK") {
		t.Fatalf("report:\n%s", text.String())
	}
	checkShedAlerts(t, r, map[string]int{o.id: 1})
	if v := metricSum(t, r.reg, "camvault_transcode_shed_total"); v != float64(shed) {
		t.Fatalf("shed_total %v, %d shed gaps", v, shed)
	}
}

// checkShedAlerts: exactly want[incident] transcode.shed alerts each.
func checkShedAlerts(t testing.TB, r *rig, want map[string]int) {
	t.Helper()
	alerts, err := r.cat.AlertsAfter(r.ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, a := range alerts {
		if a.Type == commit.AlertTranscodeShed {
			got[a.Incident]++
		}
	}
	for inc, n := range want {
		if got[inc] != n {
			t.Fatalf("incident %s: %d transcode.shed alerts, want %d", inc, got[inc], n)
		}
	}
}

// metricSum adds up every series of a gathered family.
func metricSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// TestSessionEndShedsQueuedDerivedWork: at a session's end the derived
// jobs still waiting are shed into gap records at once, End returns
// without waiting for the stuck renderer, and the end record is written
// only after the running job and the final segment's renditions.
func TestSessionEndShedsQueuedDerivedWork(t *testing.T) {
	clip := makeH264Clip(t, "320x240", 12)
	f := &fakeRenderer{gate: make(chan struct{}), started: make(chan string, 16)}
	r := newRig(t, Config{Transcode: TranscodeConfig{Enabled: true, Workers: 1, Queue: 8, Renderer: f}}, "cam-e")
	sess, err := r.rec.StartSession(r.ctx, camera.Camera{ID: "cam-e", Officer: "officer"}, clip.tracks(), "test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range clip.frames {
		if err := sess.WriteAccessUnit(clip.unit(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case job := <-f.started:
		if job != "thumb 1" {
			t.Fatalf("the worker started with %q, want thumb 1", job)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the worker started nothing: jobs %v shed %v errors %v depth %v chunks in: %v", metricSum(t, r.reg, "camvault_transcode_jobs_total"),
			metricSum(t, r.reg, "camvault_transcode_shed_total"), metricSum(t, r.reg, "camvault_transcode_errors_total"), metricSum(t, r.reg, "camvault_transcode_queue_depth"),
			metricSum(t, r.reg, "camvault_pipeline_items_total"))
	}
	start := time.Now()
	sess.End(ingest.EndTeardown, nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("End took %v with the renderer stuck", d)
	}
	lines, err := r.cat.ManifestLines(r.ctx, mustIncident(t, r, "cam-e"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if strings.Contains(string(l), `"kind":"end"`) {
			t.Fatal("end record written while a derived job is still running")
		}
	}
	close(f.gate)
	if err := r.rec.Close(); err != nil {
		t.Fatal(err)
	}
	o := r.open(t, "cam-e")
	o.checkDerivedAlignment(t)
	// The worker took thumb 1 first; segments 2-5's thumbnails and 1-5's
	// proxies were waiting; segment 6 was cut by End, after the shedding.
	for seq := 1; seq <= 5; seq++ {
		for _, track := range []string{"thumb", "proxy"} {
			k := fmt.Sprintf("%s/%d", track, seq)
			if k == "thumb/1" {
				continue
			}
			if note := o.gaps[k]; note != "derived work shed: session ended before the job started" {
				t.Fatalf("%s: gap %q; gaps %v", k, note, o.gaps)
			}
		}
	}
	for _, k := range []string{"thumb/1", "thumb/6", "proxy/6", "proxy/0"} {
		if _, ok := o.plain[k]; !ok {
			t.Fatalf("%s missing", k)
		}
	}
	checkShedAlerts(t, r, map[string]int{o.id: 1})
}

func mustIncident(t testing.TB, r *rig, camera string) string {
	t.Helper()
	incs, err := r.cat.Incidents(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range incs {
		if in.Camera == camera {
			return in.ID
		}
	}
	t.Fatalf("no incident of %s", camera)
	return ""
}
