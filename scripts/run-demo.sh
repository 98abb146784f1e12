#!/usr/bin/env bash
# `make run`: the bundled fake provider on 127.0.0.1:4010 (it serves the `demo` model of the
# example config, so the first request needs no provider account), then the gateway in the
# foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CONFIG=${2:-examples/switchboard.yaml}

"$BUILD/fake-provider" --port 4010 --quiet >/dev/null &
fake=$!
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fs http://127.0.0.1:4010/_fake/health >/dev/null 2>&1 && break
  sleep 0.1
done
echo "demo provider on 127.0.0.1:4010; starting switchboard with $CONFIG" >&2
"$BUILD/switchboard" --config "$CONFIG" &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; kill $fake 2>/dev/null; wait $fake 2>/dev/null || true' EXIT
trap 'kill -TERM $gw 2>/dev/null' INT TERM
wait $gw || true
