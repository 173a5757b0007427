package evidence

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
)

// ErrInsideDataDir refuses an export that would put plaintext in the data
// directory, where nothing unencrypted may ever be written.
var ErrInsideDataDir = errors.New("export directory is inside the data directory")

// Remuxer turns a session's stored media into the export's file without
// re-encoding: a fragmented MP4 into an MP4, a WebM stream into a WebM
// file (outPath's extension, from MediaFileName, says which). It is an
// interface so the evidence logic does not depend on the FFmpeg bindings.
type Remuxer interface {
	Remux(ctx context.Context, stored []byte, outPath string) error
}

// ExportOptions configures Export.
type ExportOptions struct {
	DataDir    string // plaintext is refused anywhere under it
	OutDir     string // created; must not exist or be empty
	NodeKey    ed25519.PublicKey
	Identities []age.Identity
	Remuxer    Remuxer // nil: the stored media (fragmented MP4, WebM stream) is written as is
	Info       any     // incident metadata for incident.json
}

// Export verifies an incident with the identity and writes the bundle:
// the playable media file (one per ingest session: MP4 for H.264, WebM for
// VP8), the manifest, checkpoints, wrapped keys, the sealed chunks and the
// verification report.
func Export(ctx context.Context, src Source, opt ExportOptions) (*Report, []string, error) {
	if err := checkOutside(opt.DataDir, opt.OutDir); err != nil {
		return nil, nil, err
	}
	rep, err := Verify(ctx, src, opt.NodeKey, opt.Identities)
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
		out := filepath.Join(opt.OutDir, MediaFileName(i, len(media), m.Container))
		name := filepath.Base(out)
		if opt.Remuxer != nil {
			err = opt.Remuxer.Remux(ctx, m.Data, out)
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
		rep.noteContainer(name, m.Container)
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
	note := name + " carries the camera's original VP8 video and Opus audio in WebM, remuxed without re-encoding: " +
		"an H.264/AAC MP4 of a VP8 session needs transcoding, which camvault does not do yet"
	for _, n := range r.Notes {
		if n == note {
			return
		}
	}
	r.Notes = append(r.Notes, note)
}

// PacketReader reads a media file's packets per stream (codec.ReadPackets).
type PacketReader func(path string) ([][][]byte, error)

// VerifyMedia checks that a bundle's media files (MP4, or WebM for VP8
// sessions) carry exactly the samples sealed in its chunks, in order,
// track by track: what the police watch is what the camera sent. It needs
// a report made with the identity.
func VerifyMedia(ctx context.Context, rep *Report, src *DirSource, read PacketReader) error {
	media, err := rep.Plaintext(ctx, src)
	if err != nil {
		return err
	}
	for i := range media {
		name := MediaFileName(i, len(media), media[i].Container)
		rep.noteContainer(name, media[i].Container)
		want, err := media[i].Samples()
		if err != nil {
			rep.fail(nil, "", "%v", err)
			continue
		}
		got, err := read(filepath.Join(src.Dir, name))
		if err != nil {
			rep.fail(nil, "", "%s: %v", name, err)
			continue
		}
		if len(got) != len(want) {
			rep.fail(nil, "", "%s has %d streams, the sealed session %d tracks", name, len(got), len(want))
			continue
		}
		for t := range want {
			if len(got[t]) != len(want[t]) {
				rep.fail(nil, "", "%s stream %d: %d packets, sealed %d", name, t, len(got[t]), len(want[t]))
				continue
			}
			for k := range want[t] {
				if !bytes.Equal(got[t][k], want[t][k]) {
					rep.fail(nil, "", "%s stream %d packet %d differs from the sealed original", name, t, k)
					break
				}
			}
		}
		rep.MediaChecked = append(rep.MediaChecked, name)
	}
	return nil
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
