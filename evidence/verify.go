// Package evidence verifies incidents and writes export bundles for the
// police. The same verification runs on an incident in the data directory
// and on an export bundle far away from camvault's servers.
package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"

	"camvault/format/chunk"
	"camvault/format/container"
	"camvault/format/fmp4"
	"camvault/format/manifest"
	"camvault/format/webm"
	"camvault/media"
)

// Source is where an incident's evidence is read from.
type Source interface {
	Incident() string
	ManifestLines(ctx context.Context) ([][]byte, error)
	CheckpointLines(ctx context.Context) ([][]byte, error)
	// Chunk returns the stored bytes of a chunk object.
	Chunk(ctx context.Context, object string) ([]byte, error)
	// WrappedKeys returns the wrapped session keys by session id.
	WrappedKeys(ctx context.Context) (map[string][]byte, error)
}

// Problem is one verification failure.
type Problem struct {
	Record  *uint64 `json:"record,omitempty"` // manifest index, when one is at fault
	Object  string  `json:"object,omitempty"`
	Message string  `json:"message"`
}

func (p Problem) String() string {
	s := p.Message
	if p.Object != "" {
		s = "chunk " + p.Object + ": " + s
	}
	if p.Record != nil {
		s = fmt.Sprintf("manifest record %d: %s", *p.Record, s)
	}
	return s
}

// Report is the outcome of a verification.
type Report struct {
	Incident     string    `json:"incident"`
	Records      int       `json:"records"`
	Chunks       int       `json:"chunks"`
	Derived      int       `json:"derived_chunks,omitempty"` // of Chunks, those of derived tracks (proxy, thumbnails), not the camera's recording
	Gaps         []string  `json:"gaps,omitempty"`
	Checkpoints  int       `json:"checkpoints"`
	Anchored     int       `json:"anchored"`                     // checkpoints confirmed by their copy in the WORM store
	Unanchored   int       `json:"unanchored_records,omitempty"` // on the node: the last records no anchored checkpoint covers, signed in the catalog only (a warning: the node retries the anchor)
	Head         string    `json:"head"`
	Decrypted    bool      `json:"decrypted"`               // AEAD tags and plaintext hashes were checked too
	MediaChecked []string  `json:"media_checked,omitempty"` // export media files compared sample by sample with the chunks
	MediaCopied  []string  `json:"media_copied,omitempty"`  // streams of files with derived streams too, compared sample by sample
	MediaDerived []string  `json:"media_derived,omitempty"` // transcoded streams, checked for count and length against the chunks
	Notes        []string  `json:"notes,omitempty"`         // what a reader of the export must know (not problems)
	CipherBytes  int64     `json:"cipher_bytes"`
	Problems     []Problem `json:"problems,omitempty"`
	// Signers are the public keys (base64) that verified the checkpoints,
	// by the node that signed them.
	Signers map[string]string `json:"signers,omitempty"`
	// Program is how the reader runs camvault, for the commands the text
	// suggests ("camvault" when empty); not part of the report itself.
	Program       string `json:"-"`
	anchorsRead   bool   // the source could show the store's anchors (an incident on its node, not an export)
	records       []manifest.Record
	openers       map[string]*chunk.Opener
	maxProblemsOK bool
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Warned reports an OK verification with something to come back to: the
// incident's last records are not anchored in the store yet.
func (r *Report) Warned() bool { return r.OK() && r.Unanchored > 0 }

func (r *Report) fail(rec *manifest.Record, object, format string, args ...any) {
	p := Problem{Object: object, Message: fmt.Sprintf(format, args...)}
	if rec != nil {
		i := rec.Index
		p.Record = &i
	}
	r.Problems = append(r.Problems, p)
}

// Verify checks an incident: the manifest's hash chain, the checkpoint
// signatures against the node keys (obtained out of band, never from the
// bundle being verified), every chunk's ciphertext hash and header, and, when
// identities are given, every AEAD tag and plaintext hash.
func Verify(ctx context.Context, src Source, nodeKeys NodeKeys, identities []age.Identity) (*Report, error) {
	rep := &Report{Incident: src.Incident()}
	lines, err := src.ManifestLines(ctx)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	recs, head, chainErr := manifest.VerifyChain(src.Incident(), lines)
	rep.Records, rep.Head, rep.records = len(recs), head, recs
	if chainErr != nil {
		var ce *manifest.ChainError
		if errors.As(chainErr, &ce) {
			i := ce.Index
			rep.Problems = append(rep.Problems, Problem{Record: &i, Message: ce.Reason})
		} else {
			rep.fail(nil, "", "%v", chainErr)
		}
	}
	if len(lines) == 0 {
		rep.fail(nil, "", "manifest is empty")
	}
	verifyComplete(rep, recs)
	verifyCheckpoints(ctx, src, rep, lines, nodeKeys)
	if as, ok := src.(AnchorSource); ok {
		rep.anchorsRead = true
		verifyAnchors(ctx, as, rep, lines, nodeKeys)
	}

	if len(identities) > 0 {
		wrapped, err := src.WrappedKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("read wrapped keys: %w", err)
		}
		rep.openers = map[string]*chunk.Opener{}
		for id, w := range wrapped {
			o, err := chunk.UnwrapSessionKey(w, identities...)
			if err != nil {
				rep.fail(nil, "", "session %s: %v", id, err)
				continue
			}
			rep.openers[id] = o
		}
		rep.Decrypted = true
	}
	for i := range recs {
		rec := &recs[i]
		switch rec.Kind {
		case manifest.KindGap:
			if rec.Track != "" && rec.Track != chunk.TrackOriginal {
				rep.Gaps = append(rep.Gaps, fmt.Sprintf("record %d: derived %s/%d: %s", rec.Index, rec.Track, rec.Seq, rec.Note))
			} else {
				rep.Gaps = append(rep.Gaps, fmt.Sprintf("record %d: %s", rec.Index, rec.Note))
			}
		case manifest.KindChunk:
			rep.Chunks++
			if rec.Track != chunk.TrackOriginal {
				rep.Derived++
			}
			verifyChunk(ctx, src, rep, rec)
		}
	}
	return rep, nil
}

func verifyCheckpoints(ctx context.Context, src Source, rep *Report, lines [][]byte, nodeKeys NodeKeys) {
	cps, err := src.CheckpointLines(ctx)
	if err != nil {
		rep.fail(nil, "", "read checkpoints: %v", err)
		return
	}
	var lastCovered int64 = -1
	for _, line := range cps {
		var cp manifest.Checkpoint
		if err := json.Unmarshal(line, &cp); err != nil {
			rep.fail(nil, "", "unparsable checkpoint: %v", err)
			continue
		}
		rep.Checkpoints++
		if cp.Incident != src.Incident() {
			rep.fail(nil, "", "checkpoint for another incident %q", cp.Incident)
			continue
		}
		pub, err := nodeKeys.check(&cp)
		if err != nil {
			rep.fail(nil, "", "%v", err)
			continue
		}
		rep.noteSigner(cp.Node, pub)
		if cp.Index >= uint64(len(lines)) {
			rep.fail(nil, "", "signed checkpoint covers record %d but the manifest has only %d records (records were removed)", cp.Index, len(lines))
			continue
		}
		if manifest.HashLine(lines[cp.Index]) != cp.Head {
			idx := cp.Index
			rep.Problems = append(rep.Problems, Problem{Record: &idx, Message: "does not match the signed checkpoint (record altered)"})
			continue
		}
		if int64(cp.Index) > lastCovered {
			lastCovered = int64(cp.Index)
		}
	}
	if len(lines) > 0 && lastCovered < int64(len(lines))-1 {
		rep.fail(nil, "", "records %d..%d are not covered by a signed checkpoint", lastCovered+1, len(lines)-1)
	}
}

// AnchorSource gives the checkpoints anchored in the WORM store, which
// whoever rewrites the catalog cannot rewrite with it.
type AnchorSource interface {
	Anchors(ctx context.Context) ([][]byte, error)
}

// verifyAnchors checks the catalog's manifest against every checkpoint
// anchored in the store: a truncated or rewritten manifest, even one
// re-signed with the node key, disagrees with them.
func verifyAnchors(ctx context.Context, src AnchorSource, rep *Report, lines [][]byte, nodeKeys NodeKeys) {
	anchors, err := src.Anchors(ctx)
	if err != nil {
		rep.fail(nil, "", "read checkpoint anchors: %v", err)
		return
	}
	lastAnchored := int64(-1)
	defer func() {
		if n := int64(len(lines)) - 1 - lastAnchored; len(lines) > 0 && n > 0 {
			rep.Unanchored = int(n)
		}
	}()
	for _, line := range anchors {
		var cp manifest.Checkpoint
		if err := json.Unmarshal(line, &cp); err != nil {
			rep.fail(nil, "", "unparsable checkpoint anchor: %v", err)
			continue
		}
		if _, err := nodeKeys.check(&cp); err != nil {
			rep.fail(nil, "", "anchor: %v", err)
			continue
		}
		idx := cp.Index
		switch {
		case cp.Incident != rep.Incident:
			rep.fail(nil, "", "anchor for another incident %q", cp.Incident)
		case idx >= uint64(len(lines)):
			rep.Problems = append(rep.Problems, Problem{Record: &idx, Message: fmt.Sprintf("anchored in the store, but the manifest now has only %d records (truncated)", len(lines))})
		case manifest.HashLine(lines[idx]) != cp.Head:
			rep.Problems = append(rep.Problems, Problem{Record: &idx, Message: "differs from the checkpoint anchored in the store (manifest rewritten)"})
		default:
			rep.Anchored++
			lastAnchored = max(lastAnchored, int64(idx))
		}
	}
}

func verifyChunk(ctx context.Context, src Source, rep *Report, rec *manifest.Record) {
	name := fmt.Sprintf("%s/%d (%s)", rec.Track, rec.Seq, rec.Object)
	b, err := src.Chunk(ctx, rec.Object)
	if err != nil {
		rep.fail(rec, name, "missing: %v", err)
		return
	}
	rep.CipherBytes += int64(len(b))
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != rec.CipherSHA256 {
		rep.fail(rec, name, "ciphertext hash does not match the manifest (altered, swapped or replaced)")
		return
	}
	h, _, _, err := chunk.Parse(b)
	if err != nil {
		rep.fail(rec, name, "%v", err)
		return
	}
	if h.Incident != rec.Incident || h.Session != rec.Session || h.Track != rec.Track || h.Seq != rec.Seq {
		rep.fail(rec, name, "header names %s/%s/%s/%d", h.Incident, h.Session, h.Track, h.Seq)
		return
	}
	if rep.openers == nil {
		return
	}
	o := rep.openers[rec.Session]
	if o == nil {
		rep.fail(rec, name, "no key for session %s", rec.Session)
		return
	}
	_, pt, err := o.Open(b)
	if err != nil {
		rep.fail(rec, name, "%v", err)
		return
	}
	ps := sha256.Sum256(pt)
	if hex.EncodeToString(ps[:]) != rec.PlainSHA256 {
		rep.fail(rec, name, "plaintext hash does not match the manifest")
	}
}

// Plaintext decrypts the incident's original track per session, in order:
// for each session its init segment followed by its media segments, which
// together form a fragmented MP4 (or, for a VP8 session, a WebM stream).
// It requires a verified report with identities, and refuses to return
// media from a failed verification.
func (r *Report) Plaintext(ctx context.Context, src Source) ([]SessionMedia, error) {
	if !r.Decrypted {
		return nil, errors.New("plaintext needs the backoffice identity")
	}
	if !r.OK() {
		return nil, errors.New("refusing to export an incident that fails verification")
	}
	var out []SessionMedia
	index := map[string]int{}
	for i := range r.records {
		rec := &r.records[i]
		if rec.Kind != manifest.KindChunk || rec.Track != chunk.TrackOriginal {
			continue
		}
		b, err := src.Chunk(ctx, rec.Object)
		if err != nil {
			return nil, err
		}
		h, pt, err := r.openers[rec.Session].Open(b)
		if err != nil {
			return nil, err
		}
		container := container.Of(h.Codec)
		if container != ContainerFMP4 && container != ContainerWebM {
			return nil, fmt.Errorf("session %s chunk %d: unknown container %q", rec.Session, rec.Seq, h.Codec)
		}
		k, ok := index[rec.Session]
		if !ok {
			k = len(out)
			index[rec.Session] = k
			out = append(out, SessionMedia{Session: rec.Session, Container: container})
		}
		sm := &out[k]
		if sm.Container != container {
			return nil, fmt.Errorf("session %s chunk %d is %s, its first chunk %s", rec.Session, rec.Seq, container, sm.Container)
		}
		if rec.Seq == 0 {
			sm.InitSize = len(pt)
		} else if !sm.timed || rec.StartNS < sm.StartNS {
			sm.StartNS, sm.timed = rec.StartNS, true
		}
		sm.Data = append(sm.Data, pt...)
		sm.Chunks = append(sm.Chunks, rec.Seq)
		if rec.EndNS > sm.EndNS {
			sm.EndNS = rec.EndNS
		}
	}
	return out, nil
}

// Containers of a session's stored media, as chunk headers name them
// before the colon of their codec field.
const (
	ContainerFMP4 = container.FormatFMP4 // H.264 sessions: fragmented MP4
	ContainerWebM = container.FormatWebM // VP8 sessions: a live WebM stream
)

// SessionMedia is one session's decrypted media.
type SessionMedia struct {
	Session   string
	Container string // ContainerFMP4 or ContainerWebM
	Data      []byte // init segment followed by the media segments
	InitSize  int
	Chunks    []uint64
	// StartNS and EndNS: the media time the session's media chunks cover.
	StartNS, EndNS int64
	timed          bool
}

// Codecs of sealed tracks and export streams, by FFmpeg's names.
const (
	CodecH264 = string(media.CodecH264)
	CodecAAC  = string(media.CodecAAC)
	CodecVP8  = string(media.CodecVP8)
	CodecOpus = string(media.CodecOpus)
)

// TrackCodecs returns the codec of each of the session's tracks, in the
// order of Samples: from the fMP4 init segment's sample entries, or the
// WebM Tracks' CodecIDs.
func (m *SessionMedia) TrackCodecs() ([]string, error) {
	if m.Container == ContainerWebM {
		_, codecs, err := webm.Tracks(m.Data)
		if err != nil {
			return nil, fmt.Errorf("session %s: parse WebM: %w", m.Session, err)
		}
		return codecs, nil
	}
	codecs, err := fmp4.TrackCodecs(m.Data[:m.InitSize])
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", m.Session, err)
	}
	return codecs, nil
}

// Samples returns the session's samples per track, in order, as stored in
// the sealed chunks.
func (m *SessionMedia) Samples() ([][][]byte, error) {
	if m.Container == ContainerWebM {
		out, err := webm.Samples(m.Data)
		if err != nil {
			return nil, fmt.Errorf("session %s: parse WebM: %w", m.Session, err)
		}
		return out, nil
	}
	out, err := fmp4.Samples(m.Data[:m.InitSize], m.Data[m.InitSize:])
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", m.Session, err)
	}
	return out, nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "incident %s\n", r.Incident)
	prog := r.Program
	if prog == "" {
		prog = "camvault"
	}
	// Every line that is not a plain OK says what it means and whether it
	// matters: a reader of an export far from the node has nobody to ask.
	if r.anchorsRead {
		fmt.Fprintf(&b, "manifest: %d records, head %s, %d signed checkpoints (%d confirmed by their anchor in the store)\n", r.Records, r.Head, r.Checkpoints, r.Anchored)
		if r.Anchored < r.Checkpoints {
			fmt.Fprintf(&b, "anchors: %d of the %d signed checkpoints have no anchor of their own in the store: a head signed again after a restart keeps the anchor of its first signing, "+
				"or the anchor could not be written (the node logs it). Their signatures are checked, and a manifest that disagreed with an anchor would fail: this does not change the result\n",
				r.Checkpoints-r.Anchored, r.Checkpoints)
		}
		if r.Unanchored > 0 {
			fmt.Fprintf(&b, "warning: the last %d record(s) (%d..%d) are covered by a signed checkpoint in the catalog but by no anchor in the store yet (its write failed: "+
				"the node logs it and retries until the store takes it): until then a rewrite of them by whoever holds the node key would not be caught. Run %s verify %s again later\n",
				r.Unanchored, r.Records-r.Unanchored, r.Records-1, prog, r.Incident)
		}
	} else {
		fmt.Fprintf(&b, "manifest: %d records, head %s, %d signed checkpoints (anchors in the store not checked: see anchors)\n", r.Records, r.Head, r.Checkpoints)
		fmt.Fprintf(&b, "anchors: not checked, as expected for an export: the store's write-once copies of the checkpoints (their anchors) stay on the node. "+
			"The result does not depend on them: the checkpoints' signatures are checked against the node key. "+
			"To confirm the checkpoints against the store too, run on the node: %s verify %s\n", prog, r.Incident)
	}
	fmt.Fprintf(&b, "chunks: %d (%d bytes sealed)\n", r.Chunks, r.CipherBytes)
	if r.Derived > 0 {
		fmt.Fprintf(&b, "derived: %d of the chunks are review proxies and thumbnails that camvault made from the original chunks of the same session and sequence number; they are not the camera's recording, and the media files carry only the originals\n", r.Derived)
	}
	if r.Decrypted {
		b.WriteString("checked: hash chain, completeness (sequence numbers and media time, or the gaps recorded), signatures, ciphertext hashes, AEAD tags, plaintext hashes\n")
	} else {
		b.WriteString("checked: hash chain, completeness (sequence numbers and media time, or the gaps recorded), signatures, ciphertext hashes (no identity: AEAD tags and plaintext not checked). " +
			"The result covers the sealed bytes, unchanged since the node signed them, not what they decrypt to: --identity FILE (the backoffice identity) checks that too\n")
	}
	for _, m := range r.MediaChecked {
		fmt.Fprintf(&b, "checked: %s carries exactly the sealed samples\n", m)
	}
	for _, m := range r.MediaCopied {
		fmt.Fprintf(&b, "checked: %s\n", m)
	}
	for _, m := range r.MediaDerived {
		fmt.Fprintf(&b, "checked: %s\n", m)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, g := range r.Gaps {
		fmt.Fprintf(&b, "gap: %s\n", g)
	}
	if len(r.Gaps) > 0 {
		fmt.Fprintf(&b, "gaps: the %d gap(s) above are recorded in the signed manifest: stretches the camera did not deliver (a lost connection, lost packets) "+
			"or derived work camvault shed. They are the evidence as recorded, not verification failures\n", len(r.Gaps))
	}
	if r.Warned() {
		b.WriteString("result: OK, with the warning above\n")
	} else if r.OK() {
		b.WriteString("result: OK\n")
	} else {
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "FAIL: %s\n", p)
		}
		b.WriteString("failed: the evidence does not match what the node signed and sealed (each FAIL line says where): do not rely on it before that is explained\n")
		b.WriteString("result: FAILED\n")
	}
	w.Write(b.Bytes())
}
