package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"camvault/format/chunk"
	"camvault/format/manifest"
	"camvault/format/redaction"
)

// VerifyRedaction checks a redacted copy's report (its file's bytes)
// against this verified incident: that it is in its canonical encoding
// and signed by a node key (the node it names in keys.ByNode, else one of
// keys.Any), that it is about this incident, that every chunk it names is
// an original chunk of its session in the verified manifest with the same
// hashes, and, when outputPath is not empty, that the redacted file is
// the one it describes. The originals are not touched: a redaction is a
// new file beside them.
func (r *Report) VerifyRedaction(report []byte, keys NodeKeys, outputPath string) (*redaction.Report, error) {
	if !r.OK() {
		return nil, errors.New("redaction report: the incident itself fails verification")
	}
	rep, err := redaction.Parse(report)
	if err != nil {
		return nil, err
	}
	if err := keys.checkRedaction(rep); err != nil {
		return nil, err
	}
	if rep.Incident != r.Incident {
		return nil, fmt.Errorf("redaction report is about incident %q, not %q", rep.Incident, r.Incident)
	}
	if len(rep.Chunks) == 0 {
		return nil, errors.New("redaction report names no original chunk")
	}
	byObject := map[string]*manifest.Record{}
	for i := range r.records {
		rec := &r.records[i]
		if rec.Kind == manifest.KindChunk && rec.Track == chunk.TrackOriginal {
			byObject[rec.Object] = rec
		}
	}
	for _, c := range rep.Chunks {
		rec, ok := byObject[c.Object]
		switch {
		case !ok:
			return nil, fmt.Errorf("redaction report names chunk %s, which is not an original chunk of the verified manifest", c.Object)
		case rec.Session != rep.Session || rec.Seq != c.Seq:
			return nil, fmt.Errorf("redaction report: chunk %s is session %s segment %d in the manifest, not session %s segment %d",
				c.Object, rec.Session, rec.Seq, rep.Session, c.Seq)
		case rec.CipherSHA256 != c.CipherSHA256 || rec.PlainSHA256 != c.PlainSHA256:
			return nil, fmt.Errorf("redaction report: chunk %s's hashes differ from the manifest's", c.Object)
		}
	}
	if outputPath != "" {
		f, err := os.Open(outputPath)
		if err != nil {
			return nil, fmt.Errorf("redacted file: %w", err)
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return nil, fmt.Errorf("redacted file: %w", err)
		}
		if n != rep.Output.Size || hex.EncodeToString(h.Sum(nil)) != rep.Output.SHA256 {
			return nil, fmt.Errorf("redacted file %s is not the one the report describes (%d bytes, SHA-256 %s)", outputPath, rep.Output.Size, rep.Output.SHA256)
		}
	}
	return rep, nil
}

// checkRedaction verifies a redaction report's signature with the key of
// the node it names, or with any key given without its node.
func (k NodeKeys) checkRedaction(rep *redaction.Report) error {
	if pub, ok := k.ByNode[rep.Node]; ok && rep.Node != "" {
		return rep.Verify(pub)
	}
	candidates := append([]ed25519.PublicKey(nil), k.Any...)
	if rep.Node == "" {
		for _, pub := range k.ByNode {
			candidates = append(candidates, pub)
		}
	}
	if len(candidates) == 0 {
		return fmt.Errorf("redaction report: no public key of node %q was given", rep.Node)
	}
	err := redaction.ErrBadSignature
	for _, pub := range candidates {
		if err = rep.Verify(pub); err == nil {
			return nil
		}
	}
	return err
}

// RedactionChunks lists a session's original chunks (init segment
// first), as a redaction report names the chunks its copy was made from.
func (r *Report) RedactionChunks(session string) []redaction.Chunk {
	var out []redaction.Chunk
	for _, rec := range r.records {
		if rec.Kind == manifest.KindChunk && rec.Session == session && rec.Track == chunk.TrackOriginal {
			out = append(out, redaction.Chunk{Seq: rec.Seq, Object: rec.Object, CipherSHA256: rec.CipherSHA256, PlainSHA256: rec.PlainSHA256})
		}
	}
	return out
}
