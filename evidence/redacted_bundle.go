package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

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
	if files[BundleNodeKeys], err = json.MarshalIndent(rep.Signers, "", "  "); err != nil {
		return err
	}
	if files[BundleInfo], err = json.MarshalIndent(map[string]any{"id": src.Incident(), "incident": info}, "", "  "); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// RedactionCheck is the outcome of VerifyRedactedBundle.
type RedactionCheck struct {
	Report   *redaction.Report
	Problems []string
}

// OK reports whether nothing was found wrong.
func (c *RedactionCheck) OK() bool { return len(c.Problems) == 0 }

// VerifyRedactedBundle checks a redacted bundle without the chunks: the
// manifest's hash chain and its signed checkpoints (with node keys
// obtained out of band) stand for the incident, and the report is checked
// against them (Report.VerifyRedaction): its encoding and signature, its
// chunks in the manifest with the same hashes, and the MP4's hash.
func VerifyRedactedBundle(ctx context.Context, dir string, nodeKeys NodeKeys) (*RedactionCheck, error) {
	raw, err := os.ReadFile(filepath.Join(dir, BundleRedactionReport))
	if err != nil {
		return nil, fmt.Errorf("not a redacted bundle: %w", err)
	}
	c := &RedactionCheck{}
	src, err := OpenBundle(dir)
	if err != nil {
		return nil, err
	}
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	rep := &Report{Incident: src.ID}
	recs, head, chainErr := manifest.VerifyChain(src.ID, lines)
	rep.Records, rep.Head, rep.records = len(recs), head, recs
	if chainErr != nil {
		rep.fail(nil, "", "manifest: %v", chainErr)
	}
	if len(lines) == 0 {
		rep.fail(nil, "", "manifest is empty")
	}
	verifyCheckpoints(ctx, src, rep, lines, nodeKeys)
	for _, p := range rep.Problems {
		c.Problems = append(c.Problems, p.String())
	}
	if !rep.OK() {
		return c, nil
	}
	// The MP4 the report names must be a file of this bundle.
	r, err := redaction.Parse(raw)
	if err != nil {
		c.Problems = append(c.Problems, fmt.Sprintf("%s: %v", BundleRedactionReport, err))
		return c, nil
	}
	name := r.Output.Name
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		c.Problems = append(c.Problems, fmt.Sprintf("the report's output %q is not a file of the bundle", name))
		return c, nil
	}
	if c.Report, err = rep.VerifyRedaction(raw, nodeKeys, filepath.Join(dir, name)); err != nil {
		c.Problems = append(c.Problems, err.Error())
	}
	return c, nil
}

// CheckOutside refuses out when it is dataDir or below it (plaintext
// never goes into the data directory), following symlinks.
func CheckOutside(dataDir, out string) error { return checkOutside(dataDir, out) }
