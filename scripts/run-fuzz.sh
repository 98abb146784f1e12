#!/usr/bin/env bash
# Runs each libFuzzer target in a fuzz build for SECONDS, starting from its seed corpus (new
# inputs go to a scratch folder, so the committed corpus stays small). Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
status=0
for bin in "$BUILD"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  corpus=fuzz/corpus/${name#fuzz_}
  scratch=$(mktemp -d)
  echo "== $name for ${SECONDS_EACH}s"
  if ! "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -artifact_prefix="$scratch/" \
      "$scratch" "$corpus" 2>&1 | grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done"; then
    :
  fi
  if ls "$scratch"/crash-* "$scratch"/leak-* "$scratch"/timeout-* >/dev/null 2>&1; then
    echo "$name: finding saved in $scratch" >&2
    status=1
  else
    rm -rf "$scratch"
  fi
done
exit $status
