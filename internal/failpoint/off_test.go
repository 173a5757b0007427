//go:build !crashtest

package failpoint

import "testing"

// TestProductionBuildIgnoresEnv: without the crashtest tag no environment
// reaches a failpoint: the process survives every hit.
func TestProductionBuildIgnoresEnv(t *testing.T) {
	t.Setenv(Env, "test.point:1")
	for range 3 {
		Hit("test.point", "x")
	}
	if Enabled {
		t.Fatal("a build without the crashtest tag reports failpoints")
	}
}

// BenchmarkHit is the cost a failpoint adds to the hot path of a normal
// build: it must be nothing (the call is inlined away).
func BenchmarkHit(b *testing.B) {
	key := "incident/original/00000001.chunk"
	for b.Loop() {
		Hit("store.after-put", key)
	}
}
