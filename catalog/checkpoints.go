package catalog

import (
	"context"
	"fmt"
)

// PendingAnchor is a signed checkpoint whose anchor in the chunk store is
// not known to be written: its write failed, or it is too recent to have
// been confirmed, or the catalog predates the anchored column.
type PendingAnchor struct {
	Incident string
	Index    uint64
	Line     []byte // the checkpoint as stored, the anchor's exact bytes
}

// PendingAnchors returns up to limit checkpoints not marked anchored, of
// incidents retention has not deleted (their anchors go with them), in
// incident and index order.
func (c *Catalog) PendingAnchors(ctx context.Context, limit int) ([]PendingAnchor, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT k.incident, k.idx, k.line FROM checkpoints k JOIN incidents i ON i.id = k.incident
		WHERE i.deleted_at IS NULL AND k.anchored IS DISTINCT FROM 1 ORDER BY k.incident, k.idx LIMIT ?`, limit)
	return scanAll(rows, err, "checkpoints without a known anchor", func(sc rowScanner) (PendingAnchor, error) {
		var p PendingAnchor
		return p, sc.Scan(&p.Incident, &p.Index, &p.Line)
	})
}

// MarkAnchored records that the checkpoint at index has its anchor in the
// store, so it is not looked for again.
func (c *Catalog) MarkAnchored(ctx context.Context, incident string, index uint64) error {
	if _, err := c.db.ExecContext(ctx, `UPDATE checkpoints SET anchored = 1 WHERE incident = ? AND idx = ?`, incident, index); err != nil {
		return fmt.Errorf("mark checkpoint %s/%d anchored: %w", incident, index, err)
	}
	return nil
}
