package evidence

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/format/redaction"
)

// Files of a redacted bundle, beside the manifest, checkpoints, node keys
// and incident information of an export bundle. It holds no sealed chunks
// and no wrapped keys: the person it is handed to gets the redacted copy
// and what proves where it came from, nothing of the original.
const (
	BundleRedactionReport = "redaction.json"
	BundleRedactedMedia   = "redacted.mp4"
)

// IsRedactedBundle reports whether dir holds a redaction report.
func IsRedactedBundle(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, BundleRedactionReport))
	return err == nil && fi.Mode().IsRegular()
}

// WriteRedactionEvidence writes the public evidence a redacted bundle
// carries into dir: the manifest, the checkpoints, the node keys that
// signed them and the incident's information.
func WriteRedactionEvidence(ctx context.Context, src Source, nodeKeys NodeKeys, info any, dir string) error {
	rep := &Report{Incident: src.Incident()}
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	verifyCheckpoints(ctx, src, rep, lines, nodeKeys)
	if !rep.OK() {
		return fmt.Errorf("incident %s: %s", src.Incident(), rep.Problems[0])
	}
	cps, err := src.CheckpointLines(ctx)
	if err != nil {
		return err
	}
	files := map[string][]byte{BundleManifest: joinLines(lines), BundleCheckpoints: joinLines(cps)}
	if files[BundleNodeKeys], err = jsonIndent(rep.Signers); err != nil {
		return err
	}
	if files[BundleInfo], err = jsonIndent(map[string]any{"id": src.Incident(), "incident": info}); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// RedactionCheck is the outcome of VerifyRedaction.
type RedactionCheck struct {
	Report   *redaction.Report
	Problems []string
}

// OK reports whether nothing was found wrong.
func (c *RedactionCheck) OK() bool { return len(c.Problems) == 0 }

// VerifyRedaction checks a redacted bundle: the report is in its canonical
// form and its signature verifies with a node key obtained out of band;
// the manifest's hash chain holds and is covered by signed checkpoints;
// every chunk the report names is a record of that manifest, with the same
// hashes; and the redacted MP4 is the file the report describes.
func VerifyRedaction(ctx context.Context, dir string, nodeKeys NodeKeys) (*RedactionCheck, error) {
	raw, err := os.ReadFile(filepath.Join(dir, BundleRedactionReport))
	if err != nil {
		return nil, fmt.Errorf("not a redacted bundle: %w", err)
	}
	c := &RedactionCheck{}
	fail := func(format string, args ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, args...)) }
	r, err := redaction.Parse(raw)
	if err != nil {
		fail("%s: %v", BundleRedactionReport, err)
		return c, nil
	}
	c.Report = r
	if err := verifyReportSignature(r, nodeKeys); err != nil {
		fail("%s: %v", BundleRedactionReport, err)
	}
	src, err := OpenBundle(dir)
	if err != nil {
		fail("%v", err)
		return c, nil
	}
	if src.ID != r.Incident {
		fail("the report is of incident %q, the bundle's evidence of %q", r.Incident, src.ID)
	}
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		fail("read manifest: %v", err)
		return c, nil
	}
	recs, _, chainErr := manifest.VerifyChain(src.ID, lines)
	if chainErr != nil {
		fail("manifest: %v", chainErr)
	}
	if len(lines) == 0 {
		fail("manifest is empty")
	}
	rep := &Report{Incident: src.ID}
	verifyCheckpoints(ctx, src, rep, lines, nodeKeys)
	for _, p := range rep.Problems {
		fail("%s", p)
	}
	byObject := map[string]manifest.Record{}
	for _, rec := range recs {
		if rec.Kind == manifest.KindChunk && rec.Track == chunk.TrackOriginal {
			byObject[rec.Object] = rec
		}
	}
	if len(r.Chunks) == 0 {
		fail("the report names no original chunks")
	}
	for _, ch := range r.Chunks {
		rec, ok := byObject[ch.Object]
		switch {
		case !ok:
			fail("chunk %s (seq %d) named by the report is not in the manifest", ch.Object, ch.Seq)
		case rec.Seq != ch.Seq || rec.Session != r.Session || rec.CipherSHA256 != ch.CipherSHA256 || rec.PlainSHA256 != ch.PlainSHA256:
			fail("chunk %s: the report's seq or hashes differ from the manifest's", ch.Object)
		}
	}
	if name := filepath.Base(r.Output.Name); name != r.Output.Name || name == "." || name == ".." {
		fail("the report's output %q is not a file of the bundle", r.Output.Name)
	} else if size, sum, err := fileSHA256(filepath.Join(dir, name)); err != nil {
		fail("output: %v", err)
	} else if size != r.Output.Size || sum != r.Output.SHA256 {
		fail("%s is not the file the report describes (size or hash differs)", name)
	}
	return c, nil
}

// verifyReportSignature checks r against its node's key, or any key when
// its node is not known by id.
func verifyReportSignature(r *redaction.Report, k NodeKeys) error {
	if pub, ok := k.ByNode[r.Node]; ok && r.Node != "" {
		return r.Verify(pub)
	}
	cands := append([]ed25519.PublicKey{}, k.Any...)
	for _, pub := range k.ByNode {
		cands = append(cands, pub)
	}
	if len(cands) == 0 {
		return errors.New("no node key to check the signature with")
	}
	for _, pub := range cands {
		if r.Verify(pub) == nil {
			return nil
		}
	}
	return redaction.ErrBadSignature
}

// fileSHA256 is a file's size and hex SHA-256.
func fileSHA256(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }

// CheckOutside refuses out when it is dataDir or below it (plaintext
// never goes into the data directory), following symlinks.
func CheckOutside(dataDir, out string) error { return checkOutside(dataDir, out) }
