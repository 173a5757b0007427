package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"camvault/internal/failpoint"
)

// ErrInsideDataDir refuses an export that would put plaintext in the data
// directory, where nothing unencrypted may ever be written.
var ErrInsideDataDir = errors.New("export directory is inside the data directory")

// MediaExporter writes a session's stored media (its init segment and
// media segments, fragmented MP4 or WebM, plaintext in memory) as the
// export's H.264/AAC MP4, whatever the camera sent: H.264 video and AAC
// audio copied packet for packet, never re-encoded; VP8 video transcoded
// to H.264 and Opus audio to AAC, on the original timestamps. It is an
// interface so the evidence logic does not depend on the FFmpeg bindings
// (codec.Exporter implements it).
type MediaExporter interface {
	ExportMP4(ctx context.Context, stored []byte, outPath string) error
}

// ExportOptions configures Export.
type ExportOptions struct {
	DataDir    string // plaintext is refused anywhere under it
	OutDir     string // created; must not exist or be empty
	NodeKeys   NodeKeys
	Identities []age.Identity
	Exporter   MediaExporter // nil: the stored media (fragmented MP4, WebM stream) is written as is
	Info       any           // incident metadata for incident.json
}

// Export verifies an incident with the identity and writes the bundle:
// the playable media file (one per ingest session: an H.264/AAC MP4 made
// by the Exporter), the manifest, checkpoints, wrapped keys, the sealed
// chunks and the verification report, which says which streams of each
// file are the camera's own bytes and which camvault derived, from which
// original chunks.
func Export(ctx context.Context, src Source, opt ExportOptions) (*Report, []string, error) {
	if err := checkOutside(opt.DataDir, opt.OutDir); err != nil {
		return nil, nil, err
	}
	rep, err := Verify(ctx, src, opt.NodeKeys, opt.Identities)
	if err != nil {
		return nil, nil, err
	}
	if !rep.OK() {
		return rep, nil, fmt.Errorf("incident %s fails verification; not exporting", src.Incident())
	}
	media, err := rep.Plaintext(ctx, src)
	if err != nil {
		return rep, nil, err
	}
	if err := os.MkdirAll(opt.OutDir, 0o700); err != nil {
		return rep, nil, fmt.Errorf("create export dir: %w", err)
	}
	if ents, _ := os.ReadDir(opt.OutDir); len(ents) > 0 {
		return rep, nil, fmt.Errorf("export dir %s is not empty", opt.OutDir)
	}
	var files []string
	for i, m := range media {
		container := m.Container
		if opt.Exporter != nil {
			container = ContainerFMP4 // an MP4 whatever was stored
		}
		out := filepath.Join(opt.OutDir, MediaFileName(i, len(media), container))
		name := filepath.Base(out)
		if opt.Exporter != nil {
			err = opt.Exporter.ExportMP4(ctx, m.Data, out)
		} else {
			err = os.WriteFile(out, m.Data, 0o600)
		}
		if err == nil {
			err = os.Chmod(out, 0o600) // plaintext footage: owner only
		}
		if err != nil {
			return rep, nil, fmt.Errorf("write %s: %w", name, err)
		}
		files = append(files, out)
		// Plaintext on disk, the bundle half written.
		failpoint.Hit("evidence.export-media", out)
		if opt.Exporter != nil {
			if err := rep.noteDerivation(name, &m); err != nil {
				return rep, nil, err
			}
		} else {
			rep.noteContainer(name, m.Container)
		}
	}
	if err := copyEvidence(ctx, src, rep, opt); err != nil {
		return rep, nil, err
	}
	return rep, files, nil
}

func copyEvidence(ctx context.Context, src Source, rep *Report, opt ExportOptions) error {
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		return err
	}
	cps, err := src.CheckpointLines(ctx)
	if err != nil {
		return err
	}
	keys, err := src.WrappedKeys(ctx)
	if err != nil {
		return err
	}
	write := func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(opt.OutDir, name), data, 0o600)
	}
	if err := write(BundleManifest, joinLines(lines)); err != nil {
		return err
	}
	if err := write(BundleCheckpoints, joinLines(cps)); err != nil {
		return err
	}
	kb, _ := json.MarshalIndent(keys, "", "  ")
	if err := write(BundleKeys, kb); err != nil {
		return err
	}
	nb, _ := json.MarshalIndent(rep.Signers, "", "  ")
	if err := write(BundleNodeKeys, nb); err != nil {
		return err
	}
	info := map[string]any{"id": src.Incident(), "incident": opt.Info}
	ib, _ := json.MarshalIndent(info, "", "  ")
	if err := write(BundleInfo, ib); err != nil {
		return err
	}
	for _, rec := range rep.records {
		if rec.Object == "" {
			continue
		}
		b, err := src.Chunk(ctx, rec.Object)
		if err != nil {
			return err
		}
		p, err := bundleChunkPath(opt.OutDir, rec.Object)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o400); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(opt.OutDir, BundleReport), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	rep.WriteText(f)
	return f.Close()
}

// MediaFileName names session i's media file in a bundle of n sessions:
// incident.mp4 or incident-partN.mp4, .webm for a WebM session.
func MediaFileName(i, n int, container string) string {
	ext := ".mp4"
	if container == ContainerWebM {
		ext = ".webm"
	}
	if n == 1 {
		return "incident" + ext
	}
	return fmt.Sprintf("incident-part%d%s", i+1, ext)
}

// noteContainer tells the reader of the report why a part is not the
// H.264/AAC MP4 the police usually get.
func (r *Report) noteContainer(name, container string) {
	if container != ContainerWebM {
		return
	}
	note := name + " is the session's stored WebM stream (the camera's VP8 video and Opus audio), written as it was sealed: " +
		"this bundle was made without an exporter, so it has no H.264/AAC MP4"
	for _, n := range r.Notes {
		if n == note {
			return
		}
	}
	r.Notes = append(r.Notes, note)
}

// MediaStream is one audio or video stream of a media file as a demuxer
// reads it (codec.ReadStreams).
type MediaStream struct {
	Codec   string   // FFmpeg's codec name: h264, aac, vp8, opus
	Packets [][]byte // every packet in file order, edit lists ignored
	// Start and End: the first packet's presentation time and the end of
	// the last packet.
	Start, End time.Duration
}

// MediaReader reads a media file's audio and video streams.
type MediaReader func(path string) ([]MediaStream, error)

// Tolerances of the checks on derived streams.
const (
	// derivedDurationSlack: a derived stream's length against the sealed
	// session's media time range. The range is cut at video segment
	// boundaries; audio starts and ends up to a frame away from them, and
	// AAC adds its encoder's priming frame (21 ms).
	derivedDurationSlack = 150 * time.Millisecond
	// aacFrame is the number of samples per AAC frame; a derived AAC
	// stream carries the Opus samples plus at most the priming frame,
	// the padding of the last frame and the encoder's flush.
	aacFrame         = 1024
	aacExtraFrames   = 3
	opusSampleRateHz = 48000
)

// VerifyMedia checks a bundle's media files against the samples sealed in
// its chunks, stream by stream. A stream in the camera's own codec (H.264,
// AAC; VP8 and Opus in a bundle of WebM files) must carry exactly the
// sealed samples, in order, packet for packet: what the police watch is
// what the camera sent. A stream camvault derived (H.264 from VP8, AAC
// from Opus) cannot be compared byte by byte; it must hold as many
// pictures as were sealed (every one, no more), as many audio samples
// (to within the AAC framing), and last as long as the sealed session
// (within 150 ms). It needs a report made with the identity.
func VerifyMedia(ctx context.Context, rep *Report, src *DirSource, read MediaReader) error {
	media, err := rep.Plaintext(ctx, src)
	if err != nil {
		return err
	}
	for i := range media {
		sm := &media[i]
		name := MediaFileName(i, len(media), ContainerFMP4)
		if _, err := os.Stat(filepath.Join(src.Dir, name)); err != nil && sm.Container == ContainerWebM {
			name = MediaFileName(i, len(media), ContainerWebM) // a bundle written without an exporter
			rep.noteContainer(name, sm.Container)
		}
		want, err := sm.Samples()
		if err != nil {
			rep.fail(nil, "", "%v", err)
			continue
		}
		codecs, err := sm.TrackCodecs()
		if err != nil {
			rep.fail(nil, "", "%v", err)
			continue
		}
		got, err := read(filepath.Join(src.Dir, name))
		if err != nil {
			rep.fail(nil, "", "%s: %v", name, err)
			continue
		}
		if len(got) != len(want) || len(codecs) != len(want) {
			rep.fail(nil, "", "%s has %d streams, the sealed session %d tracks", name, len(got), len(want))
			continue
		}
		problems := len(rep.Problems)
		var copied, derived []string
		for t := range want {
			switch {
			case got[t].Codec == codecs[t]:
				if comparePackets(rep, name, t, got[t].Packets, want[t]) {
					copied = append(copied, fmt.Sprintf("%s stream %d (%s) carries exactly the sealed samples", name, t, got[t].Codec))
				}
			case derivable(codecs[t], got[t].Codec):
				if line, ok := checkDerived(rep, name, t, sm, codecs[t], got[t], want[t]); ok {
					derived = append(derived, line)
				}
			default:
				rep.fail(nil, "", "%s stream %d is %s, the sealed track %s: not a stream camvault derives", name, t, got[t].Codec, codecs[t])
			}
		}
		if len(rep.Problems) > problems {
			continue
		}
		if len(derived) == 0 {
			// Every stream is the camera's: one line, as bundles always had.
			rep.MediaChecked = append(rep.MediaChecked, name)
			continue
		}
		rep.MediaCopied = append(rep.MediaCopied, copied...)
		rep.MediaDerived = append(rep.MediaDerived, derived...)
	}
	return nil
}

// comparePackets checks one copied stream packet by packet.
func comparePackets(rep *Report, name string, t int, got, want [][]byte) bool {
	if len(got) != len(want) {
		rep.fail(nil, "", "%s stream %d: %d packets, sealed %d", name, t, len(got), len(want))
		return false
	}
	for k := range want {
		if !bytes.Equal(got[k], want[k]) {
			rep.fail(nil, "", "%s stream %d packet %d differs from the sealed original", name, t, k)
			return false
		}
	}
	return true
}

// derivable reports whether camvault's exporter makes to from from.
func derivable(from, to string) bool {
	return from == CodecVP8 && to == CodecH264 || from == CodecOpus && to == CodecAAC
}

// checkDerived checks a transcoded stream's count and length against the
// sealed samples it was made from.
func checkDerived(rep *Report, name string, t int, sm *SessionMedia, from string, got MediaStream, want [][]byte) (string, bool) {
	span := time.Duration(sm.EndNS - sm.StartNS)
	dur := got.End - got.Start
	var count string
	switch from {
	case CodecVP8:
		// A VP8 frame whose show_frame bit (RFC 6386, 9.1) is clear
		// only updates the decoder: it makes no picture.
		shown := 0
		for _, f := range want {
			if len(f) > 0 && f[0]&0x10 != 0 {
				shown++
			}
		}
		if len(got.Packets) != shown {
			rep.fail(nil, "", "%s stream %d (H.264 derived from VP8): %d pictures, sealed %d", name, t, len(got.Packets), shown)
			return "", false
		}
		count = fmt.Sprintf("%d pictures, as sealed", shown)
	case CodecOpus:
		n := 0
		for k, p := range want {
			s, err := opusSamples(p)
			if err != nil {
				rep.fail(nil, "", "%s stream %d: sealed Opus packet %d: %v", name, t, k, err)
				return "", false
			}
			n += s
		}
		spanSamples := int(span.Seconds() * opusSampleRateHz)
		have := len(got.Packets) * aacFrame
		if have < n || have > max(n, spanSamples)+aacExtraFrames*aacFrame {
			rep.fail(nil, "", "%s stream %d (AAC derived from Opus): %d AAC frames (%d samples) for %d sealed Opus samples", name, t, len(got.Packets), have, n)
			return "", false
		}
		count = fmt.Sprintf("%d AAC frames for %d sealed Opus samples", len(got.Packets), n)
	}
	if d := dur - span; d < -derivedDurationSlack || d > derivedDurationSlack {
		rep.fail(nil, "", "%s stream %d (%s derived from %s) lasts %.3f s, the sealed session %.3f s", name, t, got.Codec, from, dur.Seconds(), span.Seconds())
		return "", false
	}
	return fmt.Sprintf("%s stream %d (%s) derived by camvault from the camera's %s in original chunks %s of session %s: %s, lasts %.3f s against the sealed %.3f s",
		name, t, got.Codec, from, seqRanges(sm.Chunks), sm.Session, count, dur.Seconds(), span.Seconds()), true
}

// opusSamples is the number of 48 kHz samples an Opus packet decodes to,
// from its TOC byte (RFC 6716, section 3.1).
func opusSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errors.New("empty packet")
	}
	config := p[0] >> 3
	var frame int
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = []int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = []int{480, 960}[config&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = []int{120, 240, 480, 960}[config&3]
	}
	frames := 1
	switch p[0] & 3 {
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 0, errors.New("code 3 packet without a frame count")
		}
		frames = int(p[1] & 0x3f)
	}
	if n := frames * frame; frames > 0 && n <= 5760 {
		return n, nil
	}
	return 0, fmt.Errorf("%d frames of %d samples: not a valid packet", frames, frame)
}

// noteDerivation tells the reader of the report, for one exported file,
// which streams are the camera's own bytes and which camvault derived,
// and from which original chunks.
func (r *Report) noteDerivation(name string, m *SessionMedia) error {
	codecs, err := m.TrackCodecs()
	if err != nil {
		return err
	}
	var own, derived []string
	for t, c := range codecs {
		switch c {
		case CodecH264, CodecAAC:
			own = append(own, fmt.Sprintf("stream %d (%s)", t, c))
		default:
			to := CodecH264
			if c == CodecOpus {
				to = CodecAAC
			}
			derived = append(derived, fmt.Sprintf("stream %d (%s) is derived: transcoded by camvault from the camera's %s in original chunks %s of session %s", t, to, c, seqRanges(m.Chunks), m.Session))
		}
	}
	if len(derived) == 0 {
		return nil // the usual case needs no note: the camera's bytes, remuxed
	}
	note := name + ": " + strings.Join(derived, "; ")
	if len(own) > 0 {
		note += "; " + strings.Join(own, ", ") + " the camera's own bytes, copied without re-encoding"
	}
	r.Notes = append(r.Notes, note)
	return nil
}

// seqRanges writes chunk sequence numbers as ranges: 0-12, or 0-3, 5-9.
func seqRanges(seqs []uint64) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, fmt.Sprint(seqs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

func joinLines(lines [][]byte) []byte {
	var out []byte
	for _, l := range lines {
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}

// checkOutside refuses out when it is dataDir or below it, following
// symlinks of the part of out that exists.
func checkOutside(dataDir, out string) error {
	if dataDir == "" {
		return nil
	}
	d, err := realPath(dataDir)
	if err != nil {
		return err
	}
	o, err := realPath(out)
	if err != nil {
		return err
	}
	if o == d || strings.HasPrefix(o, d+string(filepath.Separator)) {
		return fmt.Errorf("%w: %s", ErrInsideDataDir, out)
	}
	return nil
}

// realPath resolves symlinks in the longest existing prefix of p.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
