package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/storage"
)

// Problem is one thing wrong with the trail. Record, when set, is the id
// of the record (counted from 1) the problem is at.
type Problem struct {
	Record  *uint64 `json:"record,omitempty"`
	Message string  `json:"message"`
}

// Report is what Verify found.
type Report struct {
	Records      uint64    `json:"records"`       // records present
	CatalogHeads int       `json:"catalog_heads"` // signed heads in the catalog that check out
	Anchored     int       `json:"anchored"`      // heads anchored in the store that check out
	Covered      uint64    `json:"covered"`       // highest index a valid head covers
	Problems     []Problem `json:"problems"`
}

// OK says whether the trail verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) fail(rec *uint64, format string, args ...any) {
	if rec != nil {
		v := *rec
		rec = &v
	}
	r.Problems = append(r.Problems, Problem{Record: rec, Message: fmt.Sprintf(format, args...)})
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	for _, p := range r.Problems {
		if p.Record != nil {
			fmt.Fprintf(&b, "FAIL record %d: %s\n", *p.Record, p.Message)
		} else {
			fmt.Fprintf(&b, "FAIL %s\n", p.Message)
		}
	}
	status := "OK"
	if !r.OK() {
		status = fmt.Sprintf("FAILED (%d problems)", len(r.Problems))
	}
	fmt.Fprintf(&b, "audit trail: %d records, %d signed heads in the catalog, %d anchored in the store, signed up to record %d: %s\n",
		r.Records, r.CatalogHeads, r.Anchored, r.Covered, status)
	_, err := w.Write(b.Bytes())
	return err
}

// Store is what verification needs of the chunk store: reading and listing
// the anchored heads.
type Store interface {
	Get(ctx context.Context, key string) (io.ReadCloser, error)
}

// Verify checks the catalog's audit trail against its signed heads and the
// heads anchored in store, with the node's public key. An error means the
// check could not run; what is wrong with the trail is in the report.
func Verify(ctx context.Context, cat Catalog, store Store, pub ed25519.PublicKey) (*Report, error) {
	rows, err := cat.AuditRows(ctx)
	if err != nil {
		return nil, err
	}
	heads, err := cat.AuditHeadLines(ctx)
	if err != nil {
		return nil, err
	}
	anchors := map[string][]byte{}
	l, ok := store.(storage.Lister)
	if !ok {
		return nil, fmt.Errorf("the chunk store cannot list the anchored audit heads")
	}
	keys, err := l.List(ctx, AnchorDir)
	if err != nil {
		return nil, fmt.Errorf("list anchored audit heads: %w", err)
	}
	for _, k := range keys {
		rc, err := store.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("anchored audit head %s: %w", k, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("anchored audit head %s: %w", k, err)
		}
		anchors[k] = b
	}
	return Check(rows, heads, anchors, pub), nil
}

// Check verifies rows (the trail as stored) against the catalog's signed
// head lines and the anchored heads (store key -> object).
func Check(rows []catalog.AuditRow, catalogHeads [][]byte, anchors map[string][]byte, pub ed25519.PublicKey) *Report {
	rep := &Report{Records: uint64(len(rows))}
	hashes := checkChain(rep, rows)
	var last uint64
	if len(rows) > 0 {
		last = rows[len(rows)-1].ID
	}
	inCatalog := map[uint64]Head{}
	for _, line := range catalogHeads {
		h, ok := parseHead(rep, "signed head in the catalog", line, pub)
		if !ok {
			continue
		}
		inCatalog[h.Index] = h
		if checkHead(rep, "signed head in the catalog", h, hashes, last) {
			rep.CatalogHeads++
		}
	}
	keys := make([]string, 0, len(anchors))
	for k := range anchors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		what := "head anchored in the store (" + k + ")"
		h, ok := parseHead(rep, what, anchors[k], pub)
		if !ok {
			continue
		}
		if k != AnchorKey(h.Index) {
			rep.fail(nil, "%s names record %d: stored under the wrong key", what, h.Index)
			continue
		}
		if c, found := inCatalog[h.Index]; !found {
			rep.fail(&h.Index, "the catalog lacks the signed head that the store anchors at this record (catalog head deleted)")
		} else if c.Head != h.Head || !c.Time.Equal(h.Time) {
			rep.fail(&h.Index, "the catalog's signed head disagrees with its anchor in the store (catalog head rewritten)")
		}
		if checkHead(rep, what, h, hashes, last) {
			rep.Anchored++
		}
	}
	return rep
}

// checkChain checks ids, stored hashes and prev links, and returns the hash
// of each present record's line by id.
func checkChain(rep *Report, rows []catalog.AuditRow) map[uint64]string {
	hashes := make(map[uint64]string, len(rows))
	var chain manifest.Chain
	prevID, prevStored := uint64(0), manifest.Genesis
	prevEdited := false
	for _, row := range rows {
		id := row.ID
		var rec catalog.AuditRecord
		dec := json.NewDecoder(bytes.NewReader(row.Line))
		dec.DisallowUnknownFields()
		decodeErr := dec.Decode(&rec)
		h, linked := chain.Follow(row.Line, rec.Prev)
		hashes[id] = h
		edited := h != row.Hash
		if edited {
			rep.fail(&id, "edited: its line does not hash to the hash stored with it")
		}
		if decodeErr != nil {
			rep.fail(&id, "unparsable: %v", decodeErr)
		}
		switch {
		case id != prevID+1:
			if id <= prevID {
				rep.fail(&id, "out of order after record %d", prevID)
			} else {
				rep.fail(&id, "records %d..%d missing (deleted): ids jump from %d to %d", prevID+1, id-1, prevID, id)
			}
		case !linked:
			// A record whose line was edited but whose stored hash was
			// left alone is already reported; its successor still names
			// the stored hash, which says the same thing twice.
			if !(prevEdited && rec.Prev == prevStored) {
				rep.fail(&id, "hash chain broken: prev does not match record %d (record %d edited, or this one forged)", prevID, prevID)
			}
		}
		prevID, prevStored, prevEdited = id, row.Hash, edited
	}
	return hashes
}

func parseHead(rep *Report, what string, line []byte, pub ed25519.PublicKey) (Head, bool) {
	var h Head
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		rep.fail(nil, "unparsable %s: %v", what, err)
		return h, false
	}
	if err := h.Verify(pub); err != nil {
		rep.fail(nil, "%s: %v (forged, or signed by another key)", what, err)
		return h, false
	}
	return h, true
}

// checkHead checks a validly signed head against the trail.
func checkHead(rep *Report, what string, h Head, hashes map[uint64]string, last uint64) bool {
	switch got, ok := hashes[h.Index]; {
	case h.Index > last:
		rep.fail(nil, "tail truncated: records %d..%d missing (a %s covers %d records, only %d remain)", last+1, h.Index, what, h.Index, last)
		return false
	case !ok:
		return false // the gap is reported by the chain check
	case got != h.Head:
		rep.fail(&h.Index, "differs from the %s (record rewritten)", what)
		return false
	}
	if h.Index > rep.Covered {
		rep.Covered = h.Index
	}
	return true
}
