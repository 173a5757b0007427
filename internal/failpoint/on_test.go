//go:build crashtest

package failpoint

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	pts, err := parse("a.b:3, c")
	if err != nil || len(pts) != 2 || pts["a.b"].at != 3 || pts["c"].at != 1 {
		t.Fatalf("parse: %v %v", pts, err)
	}
	for _, bad := range []string{"a:0", "a:x", "a:-1"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

// TestHitKillsAtNth runs this test binary again with a failpoint armed at
// its third hit: the child dies of SIGKILL after exactly two hits survived.
func TestHitKillsAtNth(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") != "" {
		for i := 1; i <= 5; i++ {
			Hit("test.point", "x")
			os.Stdout.WriteString("survived\n")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKillsAtNth$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", Env+"=test.point:3")
	out, err := cmd.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL", err)
	}
	if n := strings.Count(string(out), "survived"); n != 2 {
		t.Fatalf("%d hits survived, want 2\n%s%s", n, out, ee.Stderr)
	}
	if !strings.Contains(string(ee.Stderr), "failpoint: SIGKILL at test.point hit 3 (x)") {
		t.Fatalf("no kill line: %s", ee.Stderr)
	}
}
