//go:build !crashtest

package store

// afterPut is the crash test's hook between a put and its commit; only a
// binary built with the crashtest tag has one (crash_on.go).
func afterPut(string) {}
