#!/usr/bin/env bash
# Binary size and start-up resident memory of podcreds at two revisions, side
# by side: builds each as `make build` does (static, stripped) and runs
# `podcreds agent -h` (package initialisation and flag parsing, nothing else)
# under /usr/bin/time three times, interleaved.
#
#   hack/init-rss.sh [base-rev] [new-rev]     (default: a5a290b HEAD)
set -euo pipefail
base=${1:-a5a290b}
new=${2:-HEAD}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for rev in "$base" "$new"; do
  mkdir -p "$tmp/$rev"
  git archive "$rev" | tar -x -C "$tmp/$rev"
  (cd "$tmp/$rev" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/podcreds-$rev" ./cmd/podcreds)
done
for rev in "$base" "$new"; do
  printf '%-10s binary %s bytes\n' "$rev" "$(stat -c %s "$tmp/podcreds-$rev")"
done
for i in 1 2 3; do
  for rev in "$base" "$new"; do
    /usr/bin/time -f "$rev max RSS %M KiB" "$tmp/podcreds-$rev" agent -h >/dev/null 2>"$tmp/time"
    tail -1 "$tmp/time"
  done
done
