package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"

	"camvault/format/chunk"
	"camvault/format/manifest"
)

// bundleFiles are the files of a bundle the fuzz target replaces, by the
// target's first argument: everything verify parses from a bundle
// directory, the media files aside (they are read with FFmpeg).
var bundleFiles = []string{BundleManifest, BundleCheckpoints, BundleKeys, BundleInfo, "chunk"}

// FuzzVerifyBundle: one file of a valid bundle (the manifest, the
// checkpoints, keys.json, incident.json or a chunk) replaced by any
// bytes is verified, with the identity, without a panic, and passes only
// if what verify relies on is unchanged: the same manifest lines, a
// checkpoint with the original signature over the last record, the same
// incident id, the same wrapped key, the same chunk bytes.
func FuzzVerifyBundle(f *testing.F) {
	var recs []manifest.Record
	recs = append(recs, session("ses1", 2)...)
	recs = withDerived(recs, nil)
	seed, pub, id := writeTestBundleKeys(f, recs)
	if src, err := OpenBundle(seed); err != nil {
		f.Fatal(err)
	} else if rep, err := Verify(context.Background(), src, KeysOf(pub), []age.Identity{id}); err != nil || !rep.OK() || rep.Chunks != 8 {
		f.Fatalf("the seed bundle does not verify: %v %v", err, rep.Problems)
	}
	chunkObj := chunk.ObjectKey(chunk.Header{Incident: testIncident, Session: "ses1", Track: chunk.TrackOriginal, Seq: 2})
	path := func(dir string, which int) string {
		if bundleFiles[which] == "chunk" {
			return filepath.Join(dir, BundleChunks, filepath.FromSlash(chunkObj))
		}
		return filepath.Join(dir, bundleFiles[which])
	}
	orig := make([][]byte, len(bundleFiles))
	for i := range bundleFiles {
		b, err := os.ReadFile(path(seed, i))
		if err != nil {
			f.Fatal(err)
		}
		orig[i] = b
		f.Add(uint8(i), b)
		f.Add(uint8(i), b[:len(b)/2])
		f.Add(uint8(i), append(bytes.Clone(b), b...))
	}
	f.Add(uint8(0), bytes.ReplaceAll(orig[0], []byte(`"seq":2`), []byte(`"seq":3`)))
	f.Add(uint8(0), []byte("{}\n{\"index\":1}\n"))
	f.Add(uint8(1), []byte(`{"incident":"inc-test","index":99,"head":"00","time":"2026-01-01T00:00:00Z","signature":"AAAA"}`))
	f.Add(uint8(2), []byte(`{"ses1":"not base64"}`))
	f.Add(uint8(2), []byte(`{"ses1":"YWdlLWVuY3J5cHRpb24ub3JnL3YxCg=="}`))
	f.Add(uint8(3), []byte(`{"id":"other"}`))
	f.Add(uint8(4), []byte("CAMVCHNK\x01\x00\x00\x00\x02{}"))
	origLines, _ := (&DirSource{Dir: seed, ID: testIncident}).ManifestLines(context.Background())
	var origCP manifest.Checkpoint
	json.Unmarshal(bytes.TrimSpace(orig[1]), &origCP)
	var origKeys map[string][]byte
	json.Unmarshal(orig[2], &origKeys)

	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		w := int(which) % len(bundleFiles)
		dir := t.TempDir()
		for i, name := range bundleFiles[:len(bundleFiles)-1] {
			if err := os.WriteFile(filepath.Join(dir, name), orig[i], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if bundleFiles[w] == "chunk" {
			copyTree(t, filepath.Join(seed, BundleChunks), filepath.Join(dir, BundleChunks))
		} else if err := os.Symlink(filepath.Join(seed, BundleChunks), filepath.Join(dir, BundleChunks)); err != nil {
			t.Fatal(err) // the chunks are only read: shared by every input
		}
		if err := os.WriteFile(path(dir, w), data, 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := OpenBundle(dir)
		if err != nil {
			return // refused: not a bundle
		}
		rep, err := Verify(context.Background(), src, KeysOf(pub), []age.Identity{id})
		if err != nil || !rep.OK() {
			return
		}
		// It passed: what it relies on must be what was signed and sealed.
		switch bundleFiles[w] {
		case BundleManifest:
			lines, _ := src.ManifestLines(context.Background())
			if !slices.EqualFunc(lines, origLines, bytes.Equal) {
				t.Fatalf("a changed manifest verifies:\n%s", data)
			}
		case BundleCheckpoints:
			ok := false
			for _, l := range bytes.Split(data, []byte("\n")) {
				var cp manifest.Checkpoint
				if json.Unmarshal(l, &cp) == nil && cp.Signature == origCP.Signature && cp.Index == origCP.Index {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("checkpoints without the signed head verify:\n%s", data)
			}
		case BundleKeys:
			var keys map[string][]byte
			if json.Unmarshal(data, &keys) != nil || !bytes.Equal(keys["ses1"], origKeys["ses1"]) {
				t.Fatalf("changed keys verify:\n%q", data)
			}
		case BundleInfo:
			if src.ID != testIncident {
				t.Fatalf("bundle of incident %q verifies as %q", testIncident, src.ID)
			}
		default:
			if !bytes.Equal(data, orig[w]) {
				t.Fatalf("a changed chunk verifies:\n%q", data)
			}
		}
	})
}

// copyTree copies the regular files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
