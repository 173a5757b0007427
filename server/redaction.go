package server

import (
	"bytes"
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
	"time"

	"filippo.io/age"

	"camvault/backoffice"
	"camvault/catalog"
	"camvault/evidence"
	"camvault/format/redaction"
	"camvault/redact"
	"camvault/storage"
)

// redactor is the backoffice's Redactor: it verifies and decrypts an
// incident in memory (evidence), finds faces and renders the copy
// (redact), and signs the report with the node key.
type redactor struct {
	cat     *catalog.Catalog
	store   storage.ChunkStore
	nodeKey ed25519.PublicKey
	signer  ed25519.PrivateKey
	node    string
	ids     []age.Identity
	now     func() time.Time
	opts    redact.DetectOptions
}

// Detection is what the detect endpoint answers: the session looked at
// (a redaction covers one ingest session, the incident's first with
// video) and its face tracks.
type Detection struct {
	Session string         `json:"session"`
	Tracks  []redact.Track `json:"tracks"`
}

// RedactionPlan is the plan a redaction request carries: the engine's
// plan over one session ("" : the incident's first).
type RedactionPlan struct {
	Session string      `json:"session,omitempty"`
	Plan    redact.Plan `json:"plan"`
}

// NewRedactor is the Redactor `camvault redact` uses outside a server:
// node names the node whose key signs the reports ("" : the report names
// none, and verifying tries every known node key).
func NewRedactor(cat *catalog.Catalog, store storage.ChunkStore, nodeKey ed25519.PublicKey, signer ed25519.PrivateKey,
	node string, ids []age.Identity) backoffice.Redactor {
	return &redactor{cat: cat, store: store, nodeKey: nodeKey, signer: signer, node: node, ids: ids, now: time.Now}
}

func (r *redactor) source(incident string) *evidence.CatalogSource {
	return &evidence.CatalogSource{Catalog: r.cat, Store: r.store, ID: incident}
}

func (r *redactor) nodeKeys(ctx context.Context) (evidence.NodeKeys, error) {
	keys, err := r.cat.NodeKeys(ctx)
	if err != nil {
		return evidence.NodeKeys{}, err
	}
	return evidence.NodeKeys{ByNode: keys, Any: []ed25519.PublicKey{r.nodeKey}}, nil
}

// session verifies the incident with the identity and decrypts the
// session asked for (or the first), in memory.
func (r *redactor) session(ctx context.Context, incident, session string) (*evidence.SessionMedia, *evidence.Report, error) {
	src := r.source(incident)
	nk, err := r.nodeKeys(ctx)
	if err != nil {
		return nil, nil, err
	}
	rep, err := evidence.Verify(ctx, src, nk, r.ids)
	if err != nil {
		return nil, nil, err
	}
	if !rep.OK() {
		return nil, nil, fmt.Errorf("incident %s fails verification: %s", incident, rep.Problems[0])
	}
	media, err := rep.Plaintext(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	for i := range media {
		if session == "" || media[i].Session == session {
			return &media[i], rep, nil
		}
	}
	if session != "" {
		return nil, nil, fmt.Errorf("incident %s has no session %s", incident, session)
	}
	return nil, nil, backoffice.ErrNoFootage
}

func (r *redactor) Detect(ctx context.Context, incident string) (json.RawMessage, error) {
	m, _, err := r.session(ctx, incident, "")
	if err != nil {
		return nil, err
	}
	tracks, err := redact.Detect(ctx, redact.SessionClip(m), r.opts)
	if err != nil {
		return nil, fmt.Errorf("detect faces in %s: %w", incident, err)
	}
	if tracks == nil {
		tracks = []redact.Track{}
	}
	return json.Marshal(Detection{Session: m.Session, Tracks: tracks})
}

// parsePlan reads a request's plan strictly and validates it.
func parsePlan(raw json.RawMessage) (*RedactionPlan, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var p RedactionPlan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("want {\"session\": ..., \"plan\": {From, To, Tracks, Edits}}: %w", err)
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return nil, errors.New("data after the plan")
	}
	if err := p.Plan.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (r *redactor) CheckPlan(raw json.RawMessage) error {
	_, err := parsePlan(raw)
	return err
}

func (r *redactor) Render(ctx context.Context, x catalog.Redaction, dir string) error {
	p, err := parsePlan(x.Plan)
	if err != nil {
		return err
	}
	m, verified, err := r.session(ctx, x.Incident, p.Session)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create redaction dir: %w", err)
	}
	out := filepath.Join(dir, evidence.BundleRedactedMedia)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	err = redact.Render(ctx, redact.SessionClip(m), p.Plan, cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("render redaction %s: %w", x.ID, err)
	}
	src := r.source(x.Incident)
	rep := p.Plan.Report()
	rep.Incident, rep.Session, rep.Reference, rep.Reason = x.Incident, m.Session, x.Reference, x.Reason
	rep.Chunks = verified.RedactionChunks(m.Session)
	rep.Output = redaction.File{Name: evidence.BundleRedactedMedia, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}
	rep.RequestedBy, rep.RequestedAt = x.RequestedBy, x.RequestedAt.UTC()
	if x.ApprovedAt != nil {
		rep.ApprovedBy, rep.ApprovedAt = x.ApprovedBy, x.ApprovedAt.UTC()
	}
	rep.RenderedAt, rep.Node = r.now().UTC(), r.node
	if err := rep.Sign(r.signer); err != nil {
		return err
	}
	b, err := rep.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, evidence.BundleRedactionReport), b, 0o600); err != nil {
		return err
	}
	info, err := r.cat.Incident(ctx, x.Incident)
	if err != nil {
		return err
	}
	nk, err := r.nodeKeys(ctx)
	if err != nil {
		return err
	}
	return evidence.WriteRedactionEvidence(ctx, src, nk, info, dir)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
