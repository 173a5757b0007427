package evidence

import (
	"strings"
	"testing"
)

// TestReportTextExplains: each line of the text report that is not a
// plain OK says what it means and whether it matters. An export cannot
// show the store's anchors: the report says that is expected there, does
// not change the result, and how to confirm them on the node; without an
// identity it says what the result does not cover; gaps are said to be
// the recording, not failures.
func TestReportTextExplains(t *testing.T) {
	text := func(r *Report) string {
		var b strings.Builder
		r.WriteText(&b)
		return b.String()
	}
	bundle := &Report{Incident: "inc-1", Records: 12, Head: "ab12", Checkpoints: 2, Chunks: 10, Program: "bin/camvault",
		Gaps: []string{"record 4: reconnected after 2.1 s"}}
	got := text(bundle)
	for _, want := range []string{
		"anchors: not checked, as expected for an export",
		"The result does not depend on them",
		"run on the node: bin/camvault verify inc-1",
		"(no identity: AEAD tags and plaintext not checked)", "--identity FILE (the backoffice identity) checks that too",
		"gap: record 4: reconnected after 2.1 s", "not verification failures",
		"result: OK",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("export report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "0 confirmed by their anchor") {
		t.Errorf("export report counts anchors it cannot see:\n%s", got)
	}

	// On the node, with every checkpoint anchored: the plain line, no
	// explanation needed.
	node := &Report{Incident: "inc-1", Records: 12, Head: "ab12", Checkpoints: 2, Anchored: 2, anchorsRead: true, Decrypted: true}
	if got := text(node); !strings.Contains(got, "2 signed checkpoints (2 confirmed by their anchor in the store)") || strings.Contains(got, "anchors:") {
		t.Errorf("node report:\n%s", got)
	}
	node.Anchored = 1
	if got := text(node); !strings.Contains(got, "anchors: 1 of the 2 signed checkpoints have no anchor of their own") ||
		!strings.Contains(got, "this does not change the result") {
		t.Errorf("node report, one checkpoint not anchored:\n%s", got)
	}
	node.Problems = []Problem{{Message: "differs from the checkpoint anchored in the store (manifest rewritten)"}}
	if got := text(node); !strings.Contains(got, "failed: the evidence does not match what the node signed") || !strings.HasSuffix(got, "result: FAILED\n") {
		t.Errorf("failed report:\n%s", got)
	}
}
