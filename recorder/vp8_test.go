package recorder

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"camvault/camera"
	"camvault/codec"
	"camvault/evidence"
	"camvault/format/chunk"
	"camvault/ingest"
	"camvault/internal/testenv"
	"camvault/media"
)

// vp8Clip is a camera's VP8 pictures and Opus frames, made by the ffmpeg
// CLI as IVF and Ogg so that the test reads them without FFmpeg's
// libraries (and without trusting the code under test).
type vp8Clip struct {
	video [][]byte // 30 fps
	audio [][]byte // 20 ms each
}

const clipSeconds = 6

func makeVP8Clip(t *testing.T) *vp8Clip {
	t.Helper()
	testenv.Require(t, "ffmpeg", "ffprobe")
	dir := t.TempDir()
	ivf, ogg := filepath.Join(dir, "v.ivf"), filepath.Join(dir, "a.opus")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v", "-t", strconv.Itoa(clipSeconds), "-c:v", "libvpx", "-g", "30", "-b:v", "400k", "-f", "ivf", ivf,
		"-map", "1:a", "-t", strconv.Itoa(clipSeconds), "-c:a", "libopus", "-b:a", "48k", "-frame_duration", "20", "-f", "opus", ogg).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	c := &vp8Clip{}
	if c.video, err = readIVF(ivf); err != nil {
		t.Fatal(err)
	}
	if c.audio, err = readOggPackets(ogg); err != nil {
		t.Fatal(err)
	}
	if len(c.video) != clipSeconds*30 || len(c.audio) < clipSeconds*50 {
		t.Fatalf("clip has %d pictures, %d audio frames", len(c.video), len(c.audio))
	}
	return c
}

// readIVF returns the frames of an IVF file (32-byte file header, then a
// 12-byte header before each frame: size, timestamp).
func readIVF(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 32 || string(b[:4]) != "DKIF" {
		return nil, errors.New("not an IVF file")
	}
	var frames [][]byte
	for b = b[binary.LittleEndian.Uint16(b[6:]):]; len(b) > 0; {
		if len(b) < 12 {
			return nil, errors.New("truncated IVF frame header")
		}
		n := int(binary.LittleEndian.Uint32(b))
		if len(b) < 12+n {
			return nil, errors.New("truncated IVF frame")
		}
		frames = append(frames, b[12:12+n])
		b = b[12+n:]
	}
	return frames, nil
}

// readOggPackets returns the audio packets of an Ogg Opus file: its
// packets without the two header packets (OpusHead, OpusTags).
func readOggPackets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var packets [][]byte
	var cur []byte
	for len(b) > 0 {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			return nil, errors.New("bad Ogg page")
		}
		nseg := int(b[26])
		if len(b) < 27+nseg {
			return nil, errors.New("truncated Ogg page")
		}
		lacing := b[27 : 27+nseg]
		data := b[27+nseg:]
		for _, l := range lacing {
			if len(data) < int(l) {
				return nil, errors.New("truncated Ogg segment")
			}
			cur = append(cur, data[:l]...)
			data = data[l:]
			if l < 255 {
				packets = append(packets, cur)
				cur = nil
			}
		}
		b = data
	}
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) {
		return nil, errors.New("not an Ogg Opus file")
	}
	return packets[2:], nil
}

// units interleaves the clip as a camera sends it: VP8 on the 90 kHz RTP
// clock, Opus on 48 kHz, in arrival order, a picture before the audio of
// the same instant (audio before the first keyframe is not recorded, and
// every unit of the clip should be).
func (c *vp8Clip) units() []*media.AccessUnit {
	start := time.Unix(1_700_000_000, 0)
	var aus []*media.AccessUnit
	k := 0
	for i, f := range c.video {
		for ; k < len(c.audio) && int64(k)*960*90000 < int64(i)*3000*48000; k++ {
			aus = append(aus, &media.AccessUnit{Track: 1, DTS: int64(k) * 960, PTS: int64(k) * 960, Key: true,
				NALUs: [][]byte{c.audio[k]}, Received: start.Add(time.Duration(k) * 20 * time.Millisecond)})
		}
		aus = append(aus, &media.AccessUnit{Track: 0, DTS: int64(i) * 3000, PTS: int64(i) * 3000, Key: f[0]&1 == 0,
			NALUs: [][]byte{f}, Received: start.Add(time.Duration(i) * time.Second / 30)})
	}
	for ; k < len(c.audio); k++ {
		aus = append(aus, &media.AccessUnit{Track: 1, DTS: int64(k) * 960, PTS: int64(k) * 960, Key: true,
			NALUs: [][]byte{c.audio[k]}, Received: start.Add(time.Duration(k) * 20 * time.Millisecond)})
	}
	return aus
}

// TestVP8SessionExportedAsH264AAC records a VP8+Opus session through the
// real recorder into a real store, exports it, and checks the MP4 the
// police would get: H.264 and AAC, playable, the right length, every
// picture, the report naming the derived streams and their chunks, and
// verification counting pictures and samples against the sealed
// originals; tampering is still caught.
func TestVP8SessionExportedAsH264AAC(t *testing.T) {
	c := makeVP8Clip(t)
	r := newRig(t, Config{}, "cam-vp8")
	ctx, data, cat, st, rec, ids, pub := r.ctx, r.data, r.cat, r.st, r.rec, r.ids, r.pub

	// What a WebRTC camera announces: codecs and clocks, no picture size.
	tracks := []media.Track{
		{ID: 0, Codec: media.CodecVP8, ClockRate: 90000},
		{ID: 1, Codec: media.CodecOpus, ClockRate: 48000, ChannelCount: 1},
	}
	sess, err := rec.StartSession(ctx, camera.Camera{ID: "cam-vp8", Officer: "officer"}, tracks, "test")
	if err != nil {
		t.Fatal(err)
	}
	for i, au := range c.units() {
		if err := sess.WriteAccessUnit(au); err != nil {
			t.Fatalf("access unit %d: %v", i, err)
		}
	}
	sess.End(ingest.EndTeardown, nil)
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}

	incs, err := cat.Incidents(ctx)
	if err != nil || len(incs) != 1 {
		t.Fatalf("incidents %v, %v", incs, err)
	}
	inc := incs[0].ID
	src := &evidence.CatalogSource{Catalog: cat, Store: st, ID: inc}
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for _, l := range lines {
		var obj struct {
			Kind   string `json:"kind"`
			Object string `json:"object"`
		}
		if err := json.Unmarshal(l, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind != "chunk" {
			continue
		}
		chunks++
		b, err := src.Chunk(ctx, obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		h, _, _, err := chunk.Parse(b)
		if err != nil || h.Codec != "webm:vp8+opus" {
			t.Fatalf("chunk %s: codec %q, %v", obj.Object, h.Codec, err)
		}
	}
	if chunks != 1+clipSeconds/2 {
		t.Fatalf("%d chunks, want the init segment and %d segments", chunks, clipSeconds/2)
	}

	out := filepath.Join(t.TempDir(), "export")
	rep, files, err := evidence.Export(ctx, src, evidence.ExportOptions{
		DataDir: data, OutDir: out, NodeKeys: evidence.KeysOf(pub), Identities: ids, Exporter: codec.Exporter{},
	})
	if err != nil {
		t.Fatalf("export: %v (%v)", err, rep.Problems)
	}
	mp4 := filepath.Join(out, "incident.mp4")
	if len(files) != 1 || files[0] != mp4 {
		t.Fatalf("exported %v", files)
	}
	report, err := os.ReadFile(filepath.Join(out, evidence.BundleReport))
	if err != nil || !strings.Contains(string(report), "stream 0 (h264) is derived: transcoded by camvault from the camera's vp8 in original chunks 0-3 of session") ||
		!strings.Contains(string(report), "stream 1 (aac) is derived: transcoded by camvault from the camera's opus in original chunks 0-3") {
		t.Fatalf("report does not say which streams are derived, from which chunks:\n%s", report)
	}

	// The police's file: H.264 and AAC at the camera's picture size and
	// length, every picture the camera sent.
	probe := func(file, entries string) string {
		b, err := exec.Command("ffprobe", "-v", "error", "-show_entries", entries, "-of", "csv=p=0", file).Output()
		if err != nil {
			t.Fatalf("ffprobe: %v", err)
		}
		return string(b)
	}
	if got := probe(mp4, "stream=codec_name,width,height"); got != "h264,320,240\naac\n" {
		t.Fatalf("streams %q", got)
	}
	if d, err := strconv.ParseFloat(strings.TrimSpace(probe(mp4, "format=duration")), 64); err != nil || d < clipSeconds-0.2 || d > clipSeconds+0.2 {
		t.Fatalf("export lasts %q s", probe(mp4, "format=duration"))
	}
	if n := decodedFrames(t, mp4); n != len(c.video) {
		t.Fatalf("export decodes to %d pictures, want %d", n, len(c.video))
	}

	// Offline verification of the bundle, media included.
	verify := func() *evidence.Report {
		t.Helper()
		bundle, err := evidence.OpenBundle(out)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := evidence.Verify(ctx, bundle, evidence.KeysOf(pub), ids)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			if err := evidence.VerifyMedia(ctx, rep, bundle, readMedia); err != nil {
				t.Fatal(err)
			}
		}
		return rep
	}
	rep = verify()
	if !rep.OK() || len(rep.MediaChecked) != 0 || len(rep.MediaDerived) != 2 || len(rep.MediaCopied) != 0 {
		t.Fatalf("honest bundle: ok %v, media %v, derived %v, problems %v", rep.OK(), rep.MediaChecked, rep.MediaDerived, rep.Problems)
	}
	if d := rep.MediaDerived[0]; !strings.Contains(d, fmt.Sprintf("%d pictures, as sealed", len(c.video))) {
		t.Fatalf("derived video check: %s", d)
	}

	// camvault's own WebM parser and FFmpeg's demuxer agree on what was
	// sealed.
	bundle, _ := evidence.OpenBundle(out)
	sessions, err := rep.Plaintext(ctx, bundle)
	if err != nil || len(sessions) != 1 || sessions[0].Container != evidence.ContainerWebM {
		t.Fatalf("plaintext: %v, %v", sessions, err)
	}
	mine, err := sessions[0].Samples()
	if err != nil {
		t.Fatal(err)
	}
	ffmpeg, err := codec.ReadWebMPackets(sessions[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ffmpeg {
		if !slices.EqualFunc(mine[i], ffmpeg[i], bytes.Equal) {
			t.Fatalf("track %d: parser and FFmpeg disagree (%d vs %d samples)", i, len(mine[i]), len(ffmpeg[i]))
		}
	}
	if !slices.EqualFunc(mine[0], c.video, bytes.Equal) || !slices.EqualFunc(mine[1], c.audio, bytes.Equal) {
		t.Fatalf("sealed %d pictures and %d audio frames that are not the camera's %d and %d", len(mine[0]), len(mine[1]), len(c.video), len(c.audio))
	}

	// A derived file that lost its last second is caught.
	short := filepath.Join(t.TempDir(), "short.mp4")
	if b, err := exec.Command("ffmpeg", "-v", "error", "-i", mp4, "-t", strconv.Itoa(clipSeconds-1), "-c", "copy", short).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	whole, err := os.ReadFile(mp4)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(short); err != nil || os.WriteFile(mp4, b, 0o600) != nil {
		t.Fatal(err)
	}
	if rep := verify(); rep.OK() || !strings.Contains(fmt.Sprint(rep.Problems), "pictures, sealed 180") {
		t.Fatalf("a shortened export not caught: %v", rep.Problems)
	}
	if err := os.WriteFile(mp4, whole, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := verify(); !rep.OK() {
		t.Fatalf("restored export: %v", rep.Problems)
	}

	// A sealed chunk altered in the bundle fails verification.
	var chunk string
	filepath.WalkDir(filepath.Join(out, evidence.BundleChunks), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, "00000002.chunk") {
			chunk = p
		}
		return nil
	})
	if chunk == "" {
		t.Fatal("chunk 2 not in the bundle")
	}
	b, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-100] ^= 1
	os.Chmod(chunk, 0o600)
	if err := os.WriteFile(chunk, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := verify(); rep.OK() || !strings.Contains(fmt.Sprint(rep.Problems), "ciphertext hash") {
		t.Fatalf("altered chunk not caught: %v", rep.Problems)
	}
}

func decodedFrames(t *testing.T, file string) int {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", file, "-map", "0:v:0", "-f", "framemd5", "-").Output()
	if err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && l[0] != '#' {
			n++
		}
	}
	return n
}

// readMedia is cmd/camvault's reader for evidence.VerifyMedia.
func readMedia(path string) ([]evidence.MediaStream, error) {
	streams, err := codec.ReadStreams(path)
	if err != nil {
		return nil, err
	}
	out := make([]evidence.MediaStream, len(streams))
	for i, s := range streams {
		out[i] = evidence.MediaStream{Codec: s.Codec, Packets: s.Packets, Start: s.Start, End: s.End}
	}
	return out, nil
}
