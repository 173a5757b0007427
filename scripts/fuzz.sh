#!/usr/bin/env bash
# Runs every fuzz target in the tree (each `func FuzzX` of a _test.go) for
# a short while: FUZZTIME, default 10s each. The seed corpora (f.Add and
# testdata/fuzz) also run as plain tests in `make test`; this explores
# beyond them. Targets are found, not listed, so a new one is never left out.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
# Each input that finds new coverage is minimized first, for up to 60 s by
# default: longer than the whole run, so a target whose inputs take
# milliseconds (a bundle verified with its chunks) would spend it all
# minimizing and never fuzz. A crasher is kept whether minimized or not.
minimize="${FUZZMINIMIZETIME:-100x}"
n=0
while IFS=: read -r file line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$line")
  pkg="./$(dirname "$file")"
  echo "fuzz $pkg $name for $fuzztime"
  corpus="$pkg/testdata/fuzz/$name"
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg" 2>&1 | tee /tmp/camvault-fuzz.$$; then
    # A failing input is written to testdata/fuzz/<target>: that is a
    # real failure. Go 1.26's fuzz coordinator can also fail a run with a
    # bare "context deadline exceeded" when -fuzztime ends while a worker
    # is mid-input (go.dev/issue/75804, fixed in Go 1.27): no input is
    # written then, and the target is run again rather than the run
    # failed on the toolchain's race.
    after=$(ls "$corpus" 2>/dev/null | sort || true)
    if [ "$before" != "$after" ] || ! grep -q 'context deadline exceeded' /tmp/camvault-fuzz.$$; then
      rm -f /tmp/camvault-fuzz.$$
      echo "fuzz: $name failed" >&2
      exit 1
    fi
    echo "fuzz: $name stopped on the toolchain's deadline race, no failing input: running it again"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"
  fi
  rm -f /tmp/camvault-fuzz.$$
  n=$((n + 1))
done < <(grep -rH --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' --exclude-dir=.git --exclude-dir=.tools . | sed 's#^\./##' | sort)
[ "$n" -gt 0 ] || { echo "fuzz: no targets found" >&2; exit 1; }
echo "fuzz: $n targets, $fuzztime each"
