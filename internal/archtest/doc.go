// Package archtest keeps camvault's dependencies pointing one way. Its test
// lists every package of the module with `go list` and checks each
// package's imports (non-test files) against one rule table, in
// arch_test.go: a forbidden import fails `make test` with the importing
// package, the imported one and the rule that forbids it, and a package no
// rule covers fails too, so a new package cannot arrive without someone
// deciding where it sits. docs/ARCHITECTURE.md explains the layers.
package archtest
