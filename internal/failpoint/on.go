//go:build crashtest

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled reports whether this build has failpoints (-tags crashtest).
const Enabled = true

// armed is the set of failpoints Env selects, read once at start: a
// failpoint's hits are counted across the process, from 1.
var armed = sync.OnceValue(func() map[string]*point {
	pts, err := parse(os.Getenv(Env))
	if err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: %s: %v\n", Env, err)
		os.Exit(2)
	}
	return pts
})

type point struct {
	mu   sync.Mutex
	at   int
	hits int
}

// Hit counts a hit of name and, at the hit Env names for it, kills the
// process with SIGKILL: no deferred function, no buffered write, no
// shutdown runs, as in a power cut.
func Hit(name, detail string) {
	p := armed()[name]
	if p == nil {
		return
	}
	p.mu.Lock()
	p.hits++
	n := p.hits
	p.mu.Unlock()
	if n != p.at {
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint: SIGKILL at %s hit %d (%s)\n", name, n, detail)
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; nothing of this goroutine may run meanwhile
}

// parse reads a list of failpoints, "name[:nth],...", nth counted from 1
// (default 1).
func parse(s string) (map[string]*point, error) {
	pts := map[string]*point{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, nth, hasNth := strings.Cut(f, ":")
		at := 1
		if hasNth {
			n, err := strconv.Atoi(nth)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("failpoint %q: the hit must be a number from 1", f)
			}
			at = n
		}
		pts[name] = &point{at: at}
	}
	return pts, nil
}
