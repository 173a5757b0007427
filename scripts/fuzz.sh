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
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$pkg"
  n=$((n + 1))
done < <(grep -rH --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' --exclude-dir=.git --exclude-dir=.tools . | sed 's#^\./##' | sort)
[ "$n" -gt 0 ] || { echo "fuzz: no targets found" >&2; exit 1; }
echo "fuzz: $n targets, $fuzztime each"
