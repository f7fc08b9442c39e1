#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (make fuzz).
#
# Go before 1.27 can end a duration-limited fuzz run with a bare "context
# deadline exceeded" failure and no failing input: a race in the toolchain's
# fuzzing coordinator at the -fuzztime deadline (go.dev/issue/75804, fixed in
# Go 1.27), seen here on a loaded machine. Such a run is run once more; a run
# that writes a failing input under testdata/fuzz, or fails any other way, or
# fails twice, fails this script.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}
log=$(mktemp)
# inputs counts the failing inputs recorded for a target.
inputs() { if [[ -d $1 ]]; then find "$1" -type f | wc -l; else echo 0; fi; }
trap 'rm -f "$log"' EXIT

for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    for attempt in 1 2; do
      echo ">> $pkg $target"
      before=$(inputs "$dir/testdata/fuzz/$target")
      if $GO test -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$log"; then
        break
      fi
      after=$(inputs "$dir/testdata/fuzz/$target")
      if [[ $attempt == 1 && $after == "$before" ]] && grep -qx '    context deadline exceeded' "$log"; then
        echo ">> $target: 'context deadline exceeded' with no failing input written: the Go toolchain's fuzz deadline race (go.dev/issue/75804); running it once more"
        continue
      fi
      exit 1
    done
  done
done
