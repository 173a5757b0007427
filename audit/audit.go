// Package audit makes the catalog's audit trail tamper-evident beyond its
// hash chain: the node signs the trail's head (how many records, the hash
// of the last) with its Ed25519 key, keeps the signed head in the catalog
// and anchors a copy in the WORM chunk store, where whoever can rewrite the
// catalog cannot remove it. Verify recomputes the chain and checks it
// against every head, so an edited record, a deleted middle record and a
// truncated tail are each reported (docs/FORMAT.md "Audit heads").
package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"camvault/catalog"
	"camvault/format/manifest"
	"camvault/storage"
)

// Head commits to the audit trail's first Index records.
type Head struct {
	Index     uint64    `json:"index"` // records covered: the last one's id (ids count from 1)
	Head      string    `json:"head"`  // hex SHA-256 of that record's line
	Time      time.Time `json:"time"`
	Signature string    `json:"signature,omitempty"` // base64 Ed25519 over SignedBytes
}

// SignedBytes is the message a head's signature covers. Its own prefix
// keeps a manifest checkpoint's signature from passing as an audit head's.
func (h *Head) SignedBytes() []byte {
	return manifest.HeadMessage(manifest.AuditHeadDomain, h.Index, h.Head, h.Time)
}

// Sign sets the head's signature.
func (h *Head) Sign(key ed25519.PrivateKey) {
	h.Signature = manifest.SignHead(key, h.SignedBytes())
}

// ErrBadSignature is returned when a head's signature does not verify.
var ErrBadSignature = errors.New("audit head signature does not verify")

// Verify checks the head's signature.
func (h *Head) Verify(pub ed25519.PublicKey) error {
	if !manifest.VerifyHead(pub, h.SignedBytes(), h.Signature) {
		return fmt.Errorf("audit head at record %d: %w", h.Index, ErrBadSignature)
	}
	return nil
}

// AnchorDir is the store prefix of the anchored audit heads.
const AnchorDir = "audit/heads/"

// AnchorKey is the store key of the head anchored at index.
func AnchorKey(index uint64) string {
	return fmt.Sprintf("%s%012d.json", AnchorDir, index)
}

// AnchorRetention is how long an anchored head is kept. Audit records are
// never deleted, so no retention period of footage bounds it; a year is
// longer than any retention category (retention.Categories), so a head
// cannot be removed while the records it covers may still be questioned,
// and the newer heads (which cover every older record) outlive it anyway.
// Holds are per incident and do not apply to the trail.
const AnchorRetention = 365 * 24 * time.Hour

// Catalog is what anchoring and verification need of the catalog.
type Catalog interface {
	AuditRows(ctx context.Context) ([]catalog.AuditRow, error)
	AuditLastID(ctx context.Context) (uint64, error)
	AddAuditHead(ctx context.Context, index uint64, line []byte) error
	AuditHeadLines(ctx context.Context) ([][]byte, error)
}

// AnchorStore is where heads are anchored: the WORM chunk store.
type AnchorStore interface {
	Put(ctx context.Context, key string, data []byte, retainUntil time.Time) error
}

// Anchorer signs and anchors the trail's head. It is safe for concurrent use.
type Anchorer struct {
	Catalog Catalog
	Store   AnchorStore // nil: the head is kept in the catalog only
	Signer  ed25519.PrivateKey
	Now     func() time.Time
	// Lock, when set, keeps the signing on one node at a time among those
	// sharing the catalog (nil: this is the only node): Anchor returns
	// ok=false while another node signs.
	Lock Singleton

	mu   sync.Mutex
	last uint64 // newest record id when this Anchorer last signed
}

// Singleton runs a job unless another node runs it at the moment.
type Singleton interface {
	Exclusive(ctx context.Context, job string, fn func(context.Context) error) (ran bool, err error)
}

// ErrBroken is returned by Anchor when the trail fails its own chain check:
// signing it would vouch for a tampered trail.
var ErrBroken = errors.New("audit trail is broken; not signing it")

// Anchor signs the current head, stores it in the catalog and anchors it in
// the store. It returns ok=false when the trail is empty or this Anchorer
// already signed this length. It refuses (ErrBroken) to sign a trail whose
// chain does not verify.
func (a *Anchorer) Anchor(ctx context.Context) (h Head, ok bool, err error) {
	if a.Lock == nil {
		return a.anchor(ctx)
	}
	_, err = a.Lock.Exclusive(ctx, "audit head signing", func(ctx context.Context) error {
		var err error
		h, ok, err = a.anchor(ctx)
		return err
	})
	return h, ok, err
}

func (a *Anchorer) anchor(ctx context.Context) (h Head, ok bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, err := a.Catalog.AuditLastID(ctx)
	if err != nil || n == 0 || n == a.last {
		return h, false, err
	}
	rows, err := a.Catalog.AuditRows(ctx)
	if err != nil {
		return h, false, err
	}
	rep := &Report{}
	hashes := checkChain(rep, rows)
	if !rep.OK() {
		return h, false, fmt.Errorf("%w: %s", ErrBroken, rep.Problems[0].Message)
	}
	last := rows[len(rows)-1].ID
	h = Head{Index: last, Head: hashes[last], Time: a.Now().UTC()}
	h.Sign(a.Signer)
	line, err := json.Marshal(&h)
	if err != nil {
		return h, false, err
	}
	if err := a.Catalog.AddAuditHead(ctx, h.Index, line); err != nil {
		return h, false, err
	}
	if a.Store != nil {
		// A head of the same length signed before (by another process, or
		// before a restart) is already anchored: that one stands.
		err := a.Store.Put(ctx, AnchorKey(h.Index), line, h.Time.Add(AnchorRetention))
		if err != nil && !errors.Is(err, storage.ErrExists) {
			return h, false, fmt.Errorf("anchor audit head %d: %w", h.Index, err)
		}
	}
	a.last = n
	return h, true, nil
}

// Logger is where Run reports a failed anchoring.
type Logger interface {
	Warn(msg string, args ...any)
}

// Run anchors the head every interval while the trail grows, until ctx ends.
func (a *Anchorer) Run(ctx context.Context, every time.Duration, log Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, _, err := a.Anchor(ctx); err != nil && ctx.Err() == nil && log != nil {
				log.Warn("audit head not anchored", "err", err)
			}
		}
	}
}
