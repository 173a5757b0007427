package backoffice

import (
	"context"
	"net/http"
)

// ExportStore keeps export requests (the catalog).
type ExportStore interface{}

// ExportBundler writes an incident's export bundle (evidence.Export, with
// the backoffice identity) into dir, which must not exist yet.
type ExportBundler interface {
	Bundle(ctx context.Context, incident, dir string) error
}

func (s *Service) exportRoutes(mux *http.ServeMux) {}
