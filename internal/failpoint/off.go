//go:build !crashtest

package failpoint

// Enabled reports whether this build has failpoints (-tags crashtest).
const Enabled = false

// Hit marks the failpoint name; detail says what is in hand (an object
// key, an incident). Without the crashtest tag it does nothing.
func Hit(name, detail string) {}
