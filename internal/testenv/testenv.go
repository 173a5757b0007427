// Package testenv is the one rule for tests that need an outside program
// (ffmpeg, ffprobe, versitygw): under CI=true a missing program fails the
// test, because .ci/run installs it; on a developer's machine it skips.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of each named program (the first name's path
// first), failing in CI and skipping elsewhere when one is missing.
func Require(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, 0, len(names))
	for _, name := range names {
		p, err := exec.LookPath(name)
		if err != nil {
			Missing(t, name+" (make test installs it)")
		}
		paths = append(paths, p)
	}
	return paths
}

// Missing reports a missing prerequisite: fatal under CI=true, a skip
// elsewhere.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required in CI but missing: %s", what)
	}
	t.Skipf("not installed: %s", what)
}
