#!/usr/bin/env bash
# `make run`: the bundled fake provider on 127.0.0.1:4010 (it serves the `demo` model of the
# example config, so the first request needs no provider account), then the gateway in the
# foreground. Ctrl-C (or SIGTERM) drains the gateway and stops both.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build}
CONFIG=${2:-examples/switchboard.yaml}
fake=
gw=

cleanup() {
  [ -n "$gw" ] && kill -TERM "$gw" 2>/dev/null && wait "$gw" 2>/dev/null
  [ -n "$fake" ] && kill -TERM "$fake" 2>/dev/null && wait "$fake" 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'exit 0' INT TERM

"$BUILD/fake-provider" --port 4010 --quiet >/dev/null &
fake=$!
for _ in $(seq 50); do
  curl -fs http://127.0.0.1:4010/_fake/health >/dev/null 2>&1 && break
  sleep 0.1
done
echo "demo provider on 127.0.0.1:4010; starting switchboard with $CONFIG" >&2
"$BUILD/switchboard" --config "$CONFIG" &
gw=$!
wait "$gw"
status=$?
gw=
exit $status
