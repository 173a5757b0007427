// Package failpoint names the points where a crash test kills the process:
// between a put and its commit, inside a checkpoint, a sweep or an export.
// Code calls Hit at such a point. In a normal build Hit is an empty
// function the compiler inlines away, so no environment can reach a
// failpoint in production; only a binary built with -tags crashtest has
// them. There, the environment variable named by Env selects points and
// the hit at which each one kills:
//
//	CAMVAULT_CRASH_AT=store.after-put:3,retention.after-delete
//
// kills the process with SIGKILL at the third hit of store.after-put, or
// at the first of retention.after-delete, whichever comes first. Before
// dying it writes one line to standard error, "failpoint: SIGKILL at
// NAME hit N (DETAIL)", so a test can tell where the process died and
// which object was in hand.
package failpoint

// Env is the variable a crashtest build reads its failpoints from.
const Env = "CAMVAULT_CRASH_AT"
