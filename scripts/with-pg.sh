#!/usr/bin/env bash
# Runs one command against a throwaway PostgreSQL 15 server:
#
#   scripts/with-pg.sh COMMAND [ARGS...]
#
# Creates a fresh cluster in a temp folder owned by the postgres user (trust auth, no
# durability: it is thrown away), starts it on a free TCP port on 127.0.0.1, waits until it
# accepts connections, runs COMMAND with
#
#   SB_TEST_PG_URL   postgresql://postgres@127.0.0.1:PORT/postgres
#   SB_TEST_PG_DATA  the cluster's data folder
#   SB_TEST_PG_BIN   the folder of pg_ctl, psql, ...
#
# then stops the server and removes the folder whatever COMMAND did, and exits with
# COMMAND's status. Exits 77 (skipped) when the server binaries are not installed
# (SB_PG_BIN names another folder of them).
#
# A test that must take the database away for a while (outage, reconnect) stops and starts
# the same cluster; port and socket folder are in its configuration, so no options are needed:
#
#   runuser -u postgres -- "$SB_TEST_PG_BIN/pg_ctl" -D "$SB_TEST_PG_DATA" stop -m fast
#   runuser -u postgres -- "$SB_TEST_PG_BIN/pg_ctl" -D "$SB_TEST_PG_DATA" start -w
#
# (as root; when not root, run pg_ctl directly: the cluster then belongs to the caller).
# The server logs to $SB_TEST_PG_DATA/log/, which is printed when startup fails.
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

PG_BIN=${SB_PG_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ] || [ ! -x "$PG_BIN/pg_isready" ]; then
    echo "with-pg: PostgreSQL 15 server binaries not found in $PG_BIN" \
        "(install the Debian package postgresql-15); skipping" >&2
    exit 77
fi

# The server refuses to run as root: as root, everything that touches the cluster runs as
# postgres; otherwise as the caller, who then owns the cluster.
if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "with-pg: running as root but there is no postgres user; skipping" >&2
        exit 77
    fi
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/sb-pg.XXXXXX") || exit 1
DATA=$DIR/data
started=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ "$started" = 1 ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DATA" stop -m immediate -w >/dev/null 2>&1
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "with-pg: $1" >&2
    if [ -d "$DATA/log" ]; then
        cat "$DATA"/log/* >&2 2>/dev/null
    fi
    [ -f "$DIR/pg_ctl.log" ] && cat "$DIR/pg_ctl.log" >&2
    exit 1
}

if [ "$(id -u)" = 0 ]; then
    chown postgres: "$DIR" || fail "cannot give $DIR to the postgres user"
fi

as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; fail "initdb failed"; }

# A port nobody listens on; a race with another process is caught by the start failing, and
# the next candidate is tried.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for _ in 1 2 3 4 5 6 7 8; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_free "$port" || continue
    # Port, socket folder and logging live in the configuration so a plain `pg_ctl start`
    # (see above) brings the same server back.
    as_pg tee "$DATA/postgresql.auto.conf" >/dev/null <<EOF || fail "cannot write the configuration"
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
shared_buffers = '32MB'
logging_collector = on
log_directory = 'log'
log_min_messages = warning
EOF
    if as_pg "$PG_BIN/pg_ctl" -D "$DATA" -w -t 30 start >"$DIR/pg_ctl.log" 2>&1; then
        started=1
        break
    fi
    # Whatever half-started must be gone before the next try.
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" stop -m immediate -w >/dev/null 2>&1
done
[ "$started" = 1 ] || fail "the server did not start"

for _ in $(seq 1 100); do
    if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
        ready=1
        break
    fi
    sleep 0.1
done
[ "${ready:-0}" = 1 ] || fail "the server does not accept connections on port $port"

export SB_TEST_PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
export SB_TEST_PG_DATA=$DATA
export SB_TEST_PG_BIN=$PG_BIN

"$@"
status=$?
exit "$status"
