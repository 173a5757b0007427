//go:build crashtest

package store

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// CrashAfterPutEnv names the environment variable of a crashtest build:
// CAMVAULT_CRASH_AFTER_PUT=N kills the process with SIGKILL right after
// the Nth chunk put (counted from 1 across the process), before the
// commit stage has seen that chunk: the put→commit window a power cut
// can hit. Only a binary built with -tags crashtest reads it, so no
// environment can reach this in a production build.
const CrashAfterPutEnv = "CAMVAULT_CRASH_AFTER_PUT"

var (
	crashAt = func() int64 {
		n, _ := strconv.ParseInt(os.Getenv(CrashAfterPutEnv), 10, 64)
		return n
	}()
	puts atomic.Int64
)

func afterPut(key string) {
	if crashAt <= 0 || puts.Add(1) != crashAt {
		return
	}
	fmt.Fprintf(os.Stderr, "crashtest: SIGKILL after put %d (%s)\n", crashAt, key)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; nothing may run meanwhile
}
