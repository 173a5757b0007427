package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// module is the module path every camvault pattern below starts with.
const module = "camvault"

// everyone is the pattern of the rules that apply to every package. They do
// not count as covering a package: each package must also match a rule of
// its own, so that a new package forces a decision about where it sits.
const everyone = module + "/..."

// A rule restricts what the packages matching Pkgs may import, from their
// non-test files. Patterns are import paths, exact or ending in "/..."
// (the path itself and everything below it). A pattern may name a package
// that does not exist yet: the table describes the target layout.
type rule struct {
	// Pkgs are the importing packages the rule is about.
	Pkgs []string
	// Except are packages matching Pkgs that the rule leaves out.
	Except []string
	// Deny are imports, camvault or third-party, that are forbidden.
	Deny []string
	// Only, when not empty, is the whole list of camvault packages that may
	// be imported (the standard library and third-party modules are not
	// restricted by it).
	Only []string
	// Why is the reason, printed with every violation.
	Why string
}

// The pipeline's readers: they read what was written and never import the
// packages that write it.
var writePath = []string{"camvault/pipeline/...", "camvault/stages/...", "camvault/recorder/...", "camvault/ingest/..."}

// rules is camvault's dependency table, the one place it is written down.
// Dependencies point one way: ingest → recorder → stages → formats, storage
// and catalog; the readers (backoffice, evidence, review, audit) sit beside
// the write path and never import it; server wires a node and cmd runs it.
var rules = []rule{
	// --- Rules for everyone -------------------------------------------

	{
		Pkgs: []string{everyone}, Except: []string{"camvault/cmd/..."},
		Deny: []string{"camvault/cmd/..."},
		Why:  "the command is the top of the graph: what it and another package both need belongs in a package below it",
	},
	{
		Pkgs: []string{everyone}, Except: []string{"camvault/cmd/...", "camvault/server/..."},
		Deny: []string{"camvault/server/..."},
		Why:  "server wires one whole node (listeners, recorder, backoffice, sweeper); only the command starts nodes",
	},
	{
		Pkgs: []string{everyone}, Except: []string{"camvault/ingest/...", "camvault/bench/...", "camvault/e2e/..."},
		Deny: []string{"github.com/bluenviron/gortsplib/...", "github.com/pion/..."},
		Why: "RTSP and WebRTC end at the ingest contract: a protocol library elsewhere means protocol details leaked past it " +
			"(bench/ and e2e/ use them as clients; test files are not checked, tests may be clients too)",
	},

	// --- The engine and the item type ---------------------------------

	{
		Pkgs: []string{"camvault/pipeline/..."},
		Deny: []string{"camvault/..."},
		Why:  "the generic engine knows nothing of cameras, chunks or stores, so every stage can build on it and it can be tested alone",
	},
	{
		Pkgs: []string{"camvault/media/..."},
		Only: []string{"camvault/format/...", "camvault/internal/..."},
		Why:  "media is the item type every stage shares: whatever it imported, every stage would import",
	},

	// --- Formats, codecs, storage, catalog: below the stages ----------

	{
		Pkgs: []string{"camvault/format/..."},
		Deny: []string{"camvault/stages/...", "camvault/recorder/...", "camvault/ingest/...", "camvault/catalog/...",
			"camvault/storage/...", "camvault/backoffice/..."}, // server and cmd: see the rules for everyone
		Why: "a format is what an auditor re-implements from docs/FORMAT.md: it is written and read without the pipeline, the catalog or a store",
	},
	{
		Pkgs: []string{"camvault/codec/..."},
		Deny: []string{"camvault/stages/...", "camvault/recorder/...", "camvault/ingest/...", "camvault/catalog/...", "camvault/storage/..."},
		Why: "codec wraps FFmpeg for the stages, review and export alike; it works on bytes and media types, " +
			"never on a stage's items, the catalog or the store",
	},
	{
		Pkgs: []string{"camvault/storage/..."},
		Deny: []string{"camvault/catalog/...", "camvault/stages/...", "camvault/recorder/...", "camvault/ingest/...", "camvault/retention/..."},
		Why: "a chunk store keeps bytes until a deadline; it does not know what they mean or who sets the deadline, " +
			"so every backend passes the same suite",
	},
	{
		Pkgs: []string{"camvault/catalog/..."},
		Deny: []string{"camvault/stages/...", "camvault/recorder/...", "camvault/ingest/...", "camvault/storage/...",
			"camvault/retention/...", "camvault/backoffice/..."}, // server: see the rules for everyone
		Why: "the catalog records what was written; the writers and readers call it, never the reverse, " +
			"and a catalog transaction never waits on the chunk store",
	},

	// --- The write path: camera → ingest → recorder → stages -----------

	{
		Pkgs: []string{"camvault/camera/..."},
		Deny: []string{"camvault/ingest/...", "camvault/recorder/...", "camvault/stages/..."},
		Why:  "who a camera is does not depend on how its stream arrives or is recorded; ingest and the backoffice both use it",
	},
	{
		Pkgs: []string{"camvault/ingest"},
		Deny: []string{"camvault/recorder/...", "camvault/stages/...", "camvault/catalog/...", "camvault/storage/...",
			"camvault/ingest/rtsp/...", "camvault/ingest/whip/..."},
		Why: "the ingest contract is what the protocol servers and the recorder agree on; it depends on neither side",
	},
	{
		Pkgs: []string{"camvault/ingest"},
		Deny: []string{"github.com/bluenviron/gortsplib/v4", "github.com/pion/webrtc/...", "github.com/pion/ice/...",
			"github.com/pion/interceptor/...", "github.com/pion/sdp/..."},
		Why: "the contract may use the libraries' RTP and format types (depacketizers, reorder buffer); " +
			"the RTSP and WHIP servers built on them live in ingest/rtsp and ingest/whip",
	},
	{
		Pkgs: []string{"camvault/ingest/rtsp/...", "camvault/ingest/whip/...", "camvault/ingest/whep/..."},
		Deny: []string{"camvault/recorder/...", "camvault/stages/...", "camvault/catalog/...", "camvault/storage/..."},
		Why: "a protocol server hands access units to the contract's Recorder and does not know what becomes of them " +
			"(the live view, ingest/whep, reads the servers' packet copies and writes nothing)",
	},
	{
		Pkgs: []string{"camvault/ingest/whep/..."},
		Deny: []string{"camvault/ingest/rtsp/...", "camvault/ingest/whip/...", "camvault/backoffice/..."},
		Why: "the live view sees cameras through the contract's feeds only, and staff only through the signed grant, " +
			"so the ingest node needs no staff accounts",
	},
	{
		Pkgs: []string{"camvault/livegrant/..."},
		Deny: []string{"camvault/..."},
		Why:  "the grant is signed by the backoffice and checked by the ingest node: standard library only, so both sides may use it",
	},
	{
		Pkgs: []string{"camvault/recorder/..."},
		Deny: []string{"camvault/ingest/rtsp/...", "camvault/ingest/whip/...", "camvault/backoffice/..."}, // server, cmd: rules for everyone
		Why:  "the recorder sees sessions through the ingest contract only, so a new protocol needs no recorder change",
	},
	{
		Pkgs: []string{"camvault/stages/..."},
		Deny: []string{"camvault/recorder/...", "camvault/ingest/...", "camvault/backoffice/...", "camvault/evidence/...", "camvault/review/..."},
		Why: "a stage transforms one item type; who feeds it (recorder, ingest) and who reads its output " +
			"(backoffice, evidence, review) sit above it and change without it",
	},

	// --- Beside the write path -----------------------------------------

	{
		Pkgs: []string{"camvault/retention/..."},
		Deny: []string{"camvault/stages/..."},
		Why:  "retention sees chunks and holds through small interfaces of its own; deleting must not depend on how chunks were written",
	},
	{
		Pkgs: []string{"camvault/backoffice/...", "camvault/evidence/...", "camvault/review/...", "camvault/audit/...", "camvault/redact/..."},
		Deny: writePath,
		Why: "readers work from what was written (catalog, store, formats), so the write path can change without them " +
			"and they cannot hold it up",
	},

	{
		Pkgs: []string{"camvault/redact/..."},
		Only: []string{"camvault/codec/...", "camvault/format/...", "camvault/media/...", "camvault/evidence/...",
			"camvault/review/...", "camvault/internal/..."},
		Why: "redaction reads a decrypted original like review and export do, and makes a copy through codec; " +
			"the workflow around it (requests, approval, audit) is the backoffice's, which calls it",
	},

	// --- Leaves and the top ------------------------------------------

	{
		Pkgs: []string{"camvault/datadir/..."},
		Deny: []string{"camvault/..."},
		Why:  "the one data-directory layout, used by every command and by server: standard library only, so anyone may use it",
	},
	{
		Pkgs: []string{"camvault/keys/..."},
		Only: []string{"camvault/datadir/...", "camvault/format/...", "camvault/internal/..."},
		Why:  "key files are loaded by the command and server for both sides; they must not drag either side in",
	},
	{
		Pkgs: []string{"camvault/internal/failpoint"},
		Deny: []string{"camvault/..."},
		Why: "the crash tests' kill points sit in every layer's hot path (store, commit, retention, export), " +
			"so anything may import failpoint and it imports nothing of camvault",
	},
	{
		Pkgs: []string{"camvault/internal/..."},
		Only: []string{"camvault/internal/..."},
		Why:  "small shared helpers sit under everything (media may use them), so they depend on nothing above",
	},
	{
		Pkgs: []string{"camvault/server/...", "camvault/cmd/..."},
		Why:  "the top: server wires a node out of everything below it, and the command runs nodes and tools",
	},
	{
		Pkgs: []string{"camvault/bench/...", "camvault/e2e/..."},
		Why:  "harnesses drive camvault from outside, like a camera or an operator would (pion and gortsplib as clients)",
	},
	{
		Pkgs: []string{"camvault/bench/baseline/..."},
		Deny: []string{"camvault/..."},
		Why: "the plain recorder the benchmarks compare camvault with shares none of camvault's code, " +
			"so a change to camvault cannot make the yardstick cheaper or dearer",
	},
}

// pkg is what the checker needs of one `go list` package.
type pkg struct {
	ImportPath string
	Imports    []string
}

// match reports whether path matches pattern (exact, or "x/..." for x and
// everything below it).
func match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) (string, bool) {
	for _, p := range patterns {
		if match(p, path) {
			return p, true
		}
	}
	return "", false
}

// applies reports whether r is about the package path.
func (r rule) applies(path string) bool {
	_, in := matchAny(r.Pkgs, path)
	_, out := matchAny(r.Except, path)
	return in && !out
}

func (r rule) String() string {
	s := "rule for " + strings.Join(r.Pkgs, ", ")
	if len(r.Except) > 0 {
		s += " except " + strings.Join(r.Except, ", ")
	}
	return s
}

// check returns every forbidden import in pkgs, and every camvault package
// that no rule of its own covers, both sorted.
func check(rules []rule, pkgs []pkg) (violations, unknown []string) {
	for _, p := range pkgs {
		if !match(everyone, p.ImportPath) {
			continue
		}
		covered := false
		for _, r := range rules {
			if !r.applies(p.ImportPath) {
				continue
			}
			if !(len(r.Pkgs) == 1 && r.Pkgs[0] == everyone) {
				covered = true
			}
			for _, imp := range p.Imports {
				if d, bad := matchAny(r.Deny, imp); bad {
					violations = append(violations, fmt.Sprintf("%s imports %s: the %s forbids %s: %s",
						p.ImportPath, imp, r, d, r.Why))
				}
				if len(r.Only) > 0 && match(everyone, imp) {
					if _, ok := matchAny(r.Only, imp); !ok {
						violations = append(violations, fmt.Sprintf("%s imports %s: the %s allows only %s: %s",
							p.ImportPath, imp, r, strings.Join(r.Only, ", "), r.Why))
					}
				}
			}
		}
		if !covered {
			unknown = append(unknown, p.ImportPath)
		}
	}
	sort.Strings(violations)
	sort.Strings(unknown)
	return violations, unknown
}

// goCmd runs the go command in dir and returns its standard output.
func goCmd(dir string, args ...string) ([]byte, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	// codec is cgo (FFmpeg): without cgo its imports would not be listed.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
	}
	return out, nil
}

// listModule returns every package of the module with its non-test imports.
// A failing go command fails the test, under CI=true and everywhere else:
// a layout that cannot be listed cannot be checked, and a skip would let it
// through.
func listModule(t *testing.T) []pkg {
	t.Helper()
	gomod, err := goCmd(".", "env", "GOMOD")
	if err != nil {
		t.Fatalf("finding the module root: %v", err)
	}
	path := strings.TrimSpace(string(gomod))
	if path == "" || path == os.DevNull {
		t.Fatalf("finding the module root: go env GOMOD is %q, not a go.mod", path)
	}
	root := filepath.Dir(path)
	mod, err := goCmd(root, "list", "-m")
	if err != nil {
		t.Fatalf("reading the module path: %v", err)
	}
	if got := strings.TrimSpace(string(mod)); got != module {
		t.Fatalf("module in %s is %q; the rule table is written for %q", root, got, module)
	}
	out, err := goCmd(root, "list", "-json=ImportPath,Imports", "./...")
	if err != nil {
		t.Fatalf("listing packages: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list ./... in %s listed no packages", root)
	}
	return pkgs
}

// TestImportDirection checks the module's real import graph against rules.
func TestImportDirection(t *testing.T) {
	violations, unknown := check(rules, listModule(t))
	for _, v := range violations {
		t.Error(v)
	}
	if len(unknown) > 0 {
		t.Errorf("packages no rule covers (add an entry for each to rules in internal/archtest/arch_test.go, "+
			"saying what it may import and why):\n\t%s", strings.Join(unknown, "\n\t"))
	}
}
