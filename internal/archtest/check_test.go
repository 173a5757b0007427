package archtest

import (
	"strings"
	"testing"
)

// TestCheckReportsForbiddenEdges feeds the real rule table a synthetic
// module with one forbidden import of each kind, so the check is shown to
// fail when it should, whatever the real tree looks like today.
func TestCheckReportsForbiddenEdges(t *testing.T) {
	pkgs := []pkg{
		{ImportPath: "camvault/codec", Imports: []string{"fmt", "camvault/media", "camvault/stages/segment"}},
		{ImportPath: "camvault/pipeline", Imports: []string{"context", "camvault/media"}},
		{ImportPath: "camvault/media", Imports: []string{"time", "camvault/catalog"}},
		{ImportPath: "camvault/backoffice", Imports: []string{"camvault/catalog", "github.com/pion/webrtc/v4", "camvault/server"}},
		{ImportPath: "camvault/ingest", Imports: []string{"github.com/pion/rtp", "github.com/pion/webrtc/v4"}},
		{ImportPath: "camvault/recorder", Imports: []string{"camvault/ingest", "camvault/ingest/whip"}},
		{ImportPath: "camvault/newthing", Imports: []string{"camvault/media"}},
	}
	violations, unknown := check(rules, pkgs)
	want := []struct{ importer, imported, rule string }{
		{"camvault/codec", "camvault/stages/segment", "rule for camvault/codec/... forbids camvault/stages/..."},
		{"camvault/pipeline", "camvault/media", "rule for camvault/pipeline/... forbids camvault/..."},
		{"camvault/media", "camvault/catalog", "rule for camvault/media/... allows only camvault/format/..., camvault/internal/..."},
		{"camvault/backoffice", "github.com/pion/webrtc/v4", "forbids github.com/pion/..."},
		{"camvault/backoffice", "camvault/server", "forbids camvault/server/..."},
		{"camvault/ingest", "github.com/pion/webrtc/v4", "rule for camvault/ingest forbids github.com/pion/webrtc/..."},
		{"camvault/recorder", "camvault/ingest/whip", "rule for camvault/recorder/... forbids camvault/ingest/whip/..."},
	}
	for _, w := range want {
		found := false
		for _, v := range violations {
			if strings.HasPrefix(v, w.importer+" imports "+w.imported+": ") && strings.Contains(v, w.rule) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s → %s (%s) not reported; got:\n\t%s", w.importer, w.imported, w.rule, strings.Join(violations, "\n\t"))
		}
	}
	if len(violations) != len(want) {
		t.Errorf("%d violations, want %d:\n\t%s", len(violations), len(want), strings.Join(violations, "\n\t"))
	}
	if len(unknown) != 1 || unknown[0] != "camvault/newthing" {
		t.Errorf("unknown packages %q, want [camvault/newthing]", unknown)
	}
}

// TestCheckAllowsTheTargetLayout is the other half: the edges the target
// layout wants are not reported, and every target package is covered.
func TestCheckAllowsTheTargetLayout(t *testing.T) {
	pkgs := []pkg{
		{ImportPath: "camvault/cmd/camvault", Imports: []string{"camvault/server", "camvault/datadir", "camvault/catalog"}},
		{ImportPath: "camvault/server", Imports: []string{"camvault/ingest/rtsp", "camvault/ingest/whip", "camvault/recorder", "camvault/backoffice", "camvault/retention"}},
		{ImportPath: "camvault/datadir", Imports: []string{"os", "path/filepath"}},
		{ImportPath: "camvault/camera", Imports: []string{"crypto/hmac", "camvault/catalog"}},
		{ImportPath: "camvault/ingest", Imports: []string{"camvault/camera", "camvault/media", "github.com/pion/rtp", "github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"}},
		{ImportPath: "camvault/ingest/rtsp", Imports: []string{"camvault/ingest", "camvault/camera", "github.com/bluenviron/gortsplib/v4"}},
		{ImportPath: "camvault/ingest/whip", Imports: []string{"camvault/ingest", "camvault/media", "github.com/pion/webrtc/v4"}},
		{ImportPath: "camvault/recorder", Imports: []string{"camvault/ingest", "camvault/pipeline", "camvault/stages/seal", "camvault/codec", "camvault/catalog", "camvault/storage"}},
		{ImportPath: "camvault/stages/seal", Imports: []string{"camvault/pipeline", "camvault/media", "camvault/format/chunk"}},
		{ImportPath: "camvault/stages/commit", Imports: []string{"camvault/catalog", "camvault/storage", "camvault/format/manifest"}},
		{ImportPath: "camvault/format/fmp4", Imports: []string{"camvault/media", "github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"}},
		{ImportPath: "camvault/media", Imports: []string{"time", "camvault/format/chunk", "camvault/internal/bufpool"}},
		{ImportPath: "camvault/pipeline", Imports: []string{"github.com/prometheus/client_golang/prometheus"}},
		{ImportPath: "camvault/evidence", Imports: []string{"camvault/catalog", "camvault/format/manifest", "camvault/codec"}},
		{ImportPath: "camvault/retention", Imports: []string{"camvault/catalog", "camvault/storage"}},
		{ImportPath: "camvault/keys", Imports: []string{"filippo.io/age", "camvault/datadir"}},
		{ImportPath: "camvault/internal/s3test", Imports: []string{"camvault/internal/testenv"}},
		{ImportPath: "camvault/e2e", Imports: []string{"github.com/pion/webrtc/v4", "github.com/bluenviron/gortsplib/v4"}},
		{ImportPath: "fmt", Imports: []string{"camvault/server"}}, // not camvault's: ignored
	}
	violations, unknown := check(rules, pkgs)
	for _, v := range violations {
		t.Error(v)
	}
	if len(unknown) > 0 {
		t.Errorf("uncovered: %q", unknown)
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"camvault/ingest", "camvault/ingest", true},
		{"camvault/ingest", "camvault/ingest/whip", false},
		{"camvault/ingest/...", "camvault/ingest", true},
		{"camvault/ingest/...", "camvault/ingest/whip", true},
		{"camvault/ingest/...", "camvault/ingestx", false},
		{"camvault/...", "camvault/media", true},
		{"github.com/pion/...", "github.com/pion/webrtc/v4", true},
		{"github.com/bluenviron/gortsplib/v4", "github.com/bluenviron/gortsplib/v4/pkg/format", false},
	} {
		if got := match(c.pattern, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}

// TestRulesWellFormed keeps the table readable and its patterns meaningful.
func TestRulesWellFormed(t *testing.T) {
	valid := func(p string) bool {
		return p != "" && !strings.HasSuffix(p, "/") &&
			!strings.Contains(strings.TrimSuffix(p, "/..."), "...")
	}
	for i, r := range rules {
		if strings.TrimSpace(r.Why) == "" {
			t.Errorf("rule %d (%s) says not why", i, r)
		}
		if len(r.Pkgs) == 0 {
			t.Errorf("rule %d is about no package", i)
		}
		for _, p := range append(append([]string{}, r.Pkgs...), r.Except...) {
			if !valid(p) || !match(everyone, p) {
				t.Errorf("rule %d (%s): %q is not a camvault package pattern", i, r, p)
			}
		}
		for _, p := range append(append([]string{}, r.Deny...), r.Only...) {
			if !valid(p) {
				t.Errorf("rule %d (%s): %q is not a package pattern", i, r, p)
			}
		}
		for _, p := range r.Only {
			if !match(everyone, p) {
				t.Errorf("rule %d (%s): Only restricts camvault packages; %q is not one", i, r, p)
			}
		}
	}
}
