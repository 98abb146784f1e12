#!/usr/bin/env bash
# Runs every test against one build folder (make test passes the ASan+UBSan build):
# unit tests and fuzz-corpus replay through ctest, then the Node integration and
# end-to-end suites against the real binaries. Prints one closing line:
# "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-asan}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export SB_BUILD_DIR=$BUILD

ctest_log=$(mktemp)
node_log=$(mktemp)
trap 'rm -f "$ctest_log" "$node_log"' EXIT

echo "== unit tests and fuzz corpus replay (ctest, $BUILD)"
ctest --test-dir "$BUILD" --output-on-failure -j 2 2>&1 | tee "$ctest_log"
ctest_rc=${PIPESTATUS[0]}
ctest_total=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$ctest_log" | tail -1)
ctest_failed=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$ctest_log" | tail -1)
ctest_total=${ctest_total:-0}
ctest_failed=${ctest_failed:-0}
if [ "$ctest_rc" != 0 ] && [ "$ctest_failed" = 0 ]; then ctest_failed=1; fi

echo "== integration and end-to-end tests (node --test, $BUILD)"
# A throwaway PostgreSQL server for the tests that need one (SB_TEST_PG_URL); the unit suite
# of the store starts its own.
WITH_PG=()
if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    WITH_PG=("$PWD/scripts/with-pg.sh")
else
    echo "PostgreSQL 15 is not installed: the PostgreSQL tests are skipped"
fi
(cd tests && "${WITH_PG[@]}" node run.mjs) 2>&1 | tee "$node_log"
node_rc=${PIPESTATUS[0]}
node_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$node_log" | awk '{s+=$1} END {print s+0}')
node_fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$node_log" | awk '{s+=$1} END {print s+0}')
if [ "$node_rc" != 0 ] && [ "$node_fail" = 0 ]; then node_fail=1; fi

passed=$(( ctest_total - ctest_failed + node_pass ))
failed=$(( ctest_failed + node_fail ))
echo
echo "ctest: $((ctest_total - ctest_failed)) of $ctest_total passed; node: $node_pass passed, $node_fail failed"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
