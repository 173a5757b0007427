package recorder

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"camvault/camera"
	"camvault/codec"
	"camvault/evidence"
	"camvault/ingest"
	"camvault/internal/testenv"
	"camvault/media"
)

// TestH264AACExportIsTheCamerasBytes: a camera that sends H.264 and AAC
// gets an export whose streams are its own bytes, copied, never
// re-encoded; the report names no derived stream and verification
// compares every packet.
func TestH264AACExportIsTheCamerasBytes(t *testing.T) {
	testenv.Require(t, "ffmpeg", "ffprobe")
	const seconds = 4
	dir := t.TempDir()
	v, a := filepath.Join(dir, "v.h264"), filepath.Join(dir, "a.aac")
	if out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-map", "0:v", "-t", strconv.Itoa(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-keyint_min", "60",
		"-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-bsf:v", "h264_metadata=aud=insert", "-f", "h264", v,
		"-map", "1:a", "-t", strconv.Itoa(seconds), "-c:a", "aac", "-b:a", "64k", "-f", "adts", a).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	raw, err := os.ReadFile(v)
	if err != nil {
		t.Fatal(err)
	}
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	var sps, pps []byte
	var pictures [][][]byte
	for _, n := range nalus {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter:
			pictures = append(pictures, nil)
			continue
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
		pictures[len(pictures)-1] = append(pictures[len(pictures)-1], n)
	}
	raw, err = os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	var adts mpeg4audio.ADTSPackets
	if err := adts.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	conf, err := mpeg4audio.AudioSpecificConfig{Type: adts[0].Type, SampleRate: adts[0].SampleRate, ChannelCount: adts[0].ChannelCount}.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	r := newRig(t, Config{}, "cam-h264")
	ctx, data, cat, st, rec, ids, pub := r.ctx, r.data, r.cat, r.st, r.rec, r.ids, r.pub
	sess, err := rec.StartSession(ctx, camera.Camera{ID: "cam-h264", Officer: "officer"}, []media.Track{
		{ID: 0, Codec: media.CodecH264, ClockRate: 90000, SPS: sps, PPS: pps},
		{ID: 1, Codec: media.CodecAAC, ClockRate: 48000, AudioConfig: conf},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	k := 0
	for i, pic := range pictures {
		dts := int64(i) * 3000
		for ; k < len(adts) && int64(k)*1024*90000 < dts*48000; k++ {
			if err := sess.WriteAccessUnit(&media.AccessUnit{Track: 1, DTS: int64(k) * 1024, PTS: int64(k) * 1024, Key: true,
				NALUs: [][]byte{adts[k].AU}, Received: start.Add(time.Duration(k) * 1024 * time.Second / 48000)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := sess.WriteAccessUnit(&media.AccessUnit{Track: 0, DTS: dts, PTS: dts, Key: i%60 == 0, NALUs: pic,
			Received: start.Add(time.Duration(i) * time.Second / 30)}); err != nil {
			t.Fatal(err)
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
	src := &evidence.CatalogSource{Catalog: cat, Store: st, ID: incs[0].ID}
	out := filepath.Join(t.TempDir(), "export")
	rep, files, err := evidence.Export(ctx, src, evidence.ExportOptions{
		DataDir: data, OutDir: out, NodeKeys: evidence.KeysOf(pub), Identities: ids, Exporter: codec.Exporter{},
	})
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "incident.mp4" {
		t.Fatalf("export: %v, %v (%v)", files, err, rep.Problems)
	}
	if report, _ := os.ReadFile(filepath.Join(out, evidence.BundleReport)); strings.Contains(string(report), "derived") {
		t.Fatalf("report of a copied session names derived streams:\n%s", report)
	}

	// The file's packets are the camera's: every picture's NAL units and
	// every AAC frame, byte for byte.
	streams, err := codec.ReadStreams(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 2 || streams[0].Codec != "h264" || streams[1].Codec != "aac" {
		t.Fatalf("%d streams", len(streams))
	}
	if len(streams[0].Packets) != len(pictures) {
		t.Fatalf("%d pictures exported, the camera sent %d", len(streams[0].Packets), len(pictures))
	}
	for i, p := range streams[0].Packets {
		var au h264.AVCC
		if err := au.Unmarshal(p); err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(au, pictures[i], bytes.Equal) {
			t.Fatalf("picture %d is not the camera's", i)
		}
	}
	for i, p := range streams[1].Packets {
		if i >= len(adts) || !bytes.Equal(p, adts[i].AU) {
			t.Fatalf("audio frame %d is not the camera's", i)
		}
	}

	bundle, err := evidence.OpenBundle(out)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = evidence.Verify(ctx, bundle, evidence.KeysOf(pub), ids)
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v, %v", err, rep.Problems)
	}
	if err := evidence.VerifyMedia(ctx, rep, bundle, readMedia); err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !slices.Equal(rep.MediaChecked, []string{"incident.mp4"}) || len(rep.MediaDerived) != 0 {
		t.Fatalf("verify media: %v, checked %v, derived %v", rep.Problems, rep.MediaChecked, rep.MediaDerived)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "incident.mp4 carries exactly the sealed samples") {
		t.Fatalf("report:\n%s", text.String())
	}
}
