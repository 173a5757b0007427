package backoffice

import (
	"context"
	"slices"

	"camvault/catalog"
)

// recentAlerts is how many alerts the Live page opens with.
const recentAlerts = 50

// recentScan bounds how far back the Live page looks for them: a role
// that sees few types (the auditor) would otherwise read the whole outbox
// on every page load. Older alerts remain in `camvault alerts` and in the
// stream from ?after=0.
const recentScan = 40 * pageSize

// liveFeed is what the Live page opens with: the latest alerts the
// viewer's role may see, oldest first, and the outbox position they were
// read up to, from which the page's event stream resumes (?after=), so
// nothing committed meanwhile falls between the two. The position is the
// hub's, not the outbox's end: the stream treats an id beyond the hub's
// as the hub's, so a page ahead of it would be sent again what it shows.
type liveFeed struct {
	Recent []catalog.Alert
	After  int64
}

// recent reads up to n of the latest alerts role may receive, filtered by
// the same rule as the event stream.
func (s *Service) recent(ctx context.Context, role Role, n int) (liveFeed, error) {
	after, _ := s.hub.position()
	feed := liveFeed{Recent: []catalog.Alert{}, After: after}
	before := after + 1
	for scanned := 0; len(feed.Recent) < n && scanned < recentScan; {
		page, err := s.cat.AlertsBefore(ctx, before, pageSize)
		if err != nil {
			return liveFeed{}, err
		}
		for _, a := range page {
			before = a.ID
			if MayReceive(role, a.Type) {
				feed.Recent = append(feed.Recent, a)
				if len(feed.Recent) == n {
					break
				}
			}
		}
		scanned += len(page)
		if len(page) < pageSize {
			break
		}
	}
	slices.Reverse(feed.Recent)
	return feed, nil
}
