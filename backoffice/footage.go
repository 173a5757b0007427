package backoffice

import (
	"context"

	"camvault/review"
)

// Footage serves decrypted footage to reviewers (review.Reviewer over the
// catalog and the chunk store, holding the backoffice identity).
type Footage interface {
	View(ctx context.Context, req review.Request) (*review.Rendition, error)
}
