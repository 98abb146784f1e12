#!/usr/bin/env bash
# switchboard benchmark: the same wrk load through nginx (the floor) and through switchboard,
# both in front of the project's fake provider, on this machine. Prints a Markdown table and
# writes it to bench/results/latest.md. See bench/README.md for what each figure means.
#
#   bench/run.sh [BUILD_DIR]        (default: build, the release build; `make bench` calls it)
#
# Knobs (environment): BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 2),
# BENCH_FAKE_THREADS (2), BENCH_TTFB_COUNT (200), BENCH_IDLE_CONNS (10000),
# BENCH_SCENARIOS (a subset of "ns16 ns64 ns256 st64 slow256 xl64 xs64 vk64"),
# BENCH_KEEP_TMP=1 (keep the temp dir with configs and logs),
# BENCH_UPSTREAM_HTTP1=curl (the gateway's libcurl client instead of its native one),
# BENCH_REDIS=1 (a local redis-server holds the virtual key's limits and budget, as several
# instances would share them: the vk64 row then includes the Redis round trip).
#
# Exit status: 0 when every process started and no request failed; 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
BUILD=${1:-build}
case $BUILD in
/*) ;;
*) BUILD=$ROOT/$BUILD ;;
esac

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
FAKE_THREADS=${BENCH_FAKE_THREADS:-2}
# Which client the gateway uses for its plain-http upstream: native (default) or curl (what
# every https provider goes through).
UPSTREAM_HTTP1=${BENCH_UPSTREAM_HTTP1:-native}
TTFB_COUNT=${BENCH_TTFB_COUNT:-200}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
WORKERS=2
SLOW_MS=50
DRIP_MS=5
MASTER_KEY=sk-bench-master
PROVIDER_KEY=sk-bench-provider
WRK_THREADS=2

SB_BIN=$BUILD/switchboard
FAKE_BIN=$BUILD/fake-provider
RESULTS_DIR=$BENCH/results

# fd 3 is the script's own stderr, so messages from a trap still reach the terminal when the
# signal arrives inside a command whose output goes to a file.
exec 3>&2
log() { printf '[bench] %s\n' "$*" >&3; }
die() {
    printf '[bench] error: %s\n' "$*" >&3
    exit 1
}

for tool in wrk nginx cc curl ss awk; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[ -x "$SB_BIN" ] || die "$SB_BIN not found: build first (make build)"
[ -x "$FAKE_BIN" ] || die "$FAKE_BIN not found: build first (make build)"
NGINX_BIN=$(command -v nginx)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sb-bench.XXXXXX")
STARTED=() # every background process this script started, stopped in cleanup
declare -A PNAME # pid -> name of the long-running processes, watched for an early exit
FAILURES=()
INTERRUPTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid st
    # A proxy or the fake that died on its own is the likeliest cause of a failed run: say so,
    # with its exit status, and keep its logs.
    for pid in "${!PNAME[@]}"; do
        if [ "$INTERRUPTED" = 0 ] && ! kill -0 "$pid" 2>/dev/null; then
            st=0
            wait "$pid" 2>/dev/null || st=$?
            log "${PNAME[$pid]} (pid $pid) ended on its own, exit status $st"
        fi
    done
    if [ "$rc" != 0 ] && [ -d "$TMP" ]; then
        mkdir -p "$RESULTS_DIR/failed-run"
        rm -f "$RESULTS_DIR/failed-run/"*
        cp "$TMP"/*-error.log "$TMP"/fake.log "$TMP"/*.err "$TMP"/*.out "$TMP"/*.conf \
            "$TMP"/*.yaml "$TMP"/wrk-*.txt "$RESULTS_DIR/failed-run/" 2>/dev/null || true
        log "logs of the failed run: ${RESULTS_DIR#"$ROOT"/}/failed-run/"
    fi
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'INTERRUPTED=1; log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# helpers

# Drops a pid that has been reaped from STARTED, so cleanup never signals a reused pid.
forget() {
    local keep=() p
    for p in "${STARTED[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    STARTED=("${keep[@]}")
}

# Runs a command in the background and waits for it: bash runs a trap only between foreground
# commands, but interrupts `wait` at once, so Ctrl-C stops the run without waiting for wrk.
run_waited() {
    local pid rc=0
    "$@" &
    pid=$!
    STARTED+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    return "$rc"
}

# A free port from [base, base+500), below the ephemeral range so wrk's client ports never
# collide with it.
pick_port() {
    local p
    for p in $(seq "$1" $(($1 + 499))); do
        if [ -z "$(ss -Htln "sport = :$p")" ]; then
            echo "$p"
            return 0
        fi
    done
    die "no free port in $1..$(($1 + 499))"
}

# wait_for_line FILE REGEX PID WHAT: until FILE has a line matching REGEX, at most 15 s.
wait_for_line() {
    for _ in $(seq 1 150); do
        grep -Eq "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || {
            tail -n 20 "$1" >&2 || true
            die "$4 exited during start-up"
        }
        sleep 0.1
    done
    tail -n 20 "$1" >&2 || true
    die "$4 did not report ready within 15 s"
}

wait_for_port() {
    for _ in $(seq 1 150); do
        [ -n "$(ss -Htln "sport = :$1")" ] && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited during start-up"
        sleep 0.1
    done
    die "$3 is not listening on port $1 after 15 s"
}

# Sum of utime+stime (clock ticks) over the given pids. Fields 14 and 15 of /proc/PID/stat,
# counted after the parenthesised command name, which may itself hold spaces.
cpu_ticks() {
    local pid total=0 v
    for pid in "$@"; do
        v=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}') || die "process $pid is gone"
        total=$((total + v))
    done
    echo "$total"
}

# status_kib FIELD PID...: sum of a /proc/PID/status field (VmHWM, VmRSS) in KiB.
status_kib() {
    local field=$1 pid total=0 v
    shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status") || die "process $pid is gone"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# Resets VmHWM to the current RSS (Linux >= 4.0, needs to own the process), so each scenario
# reports its own peak. Without it the figure is the peak since start; the table says so.
HWM_RESETS=1
reset_hwm() {
    local pid
    for pid in "$@"; do
        echo 5 2>/dev/null >"/proc/$pid/clear_refs" || HWM_RESETS=0
    done
}

# A chat-completions body of about 1 KB, as a client would send it: a long system message and
# a short question. The fake echoes the last user message, so its reply (and, streaming, its
# event count: one per word, 20 in all) stays the same whatever the padding.
make_body() { # model stream-flag file
    local stream=""
    [ "$2" = 1 ] && stream='"stream":true,'
    printf '{"model":"%s",%s"messages":[{"role":"system","content":"%s"},{"role":"user","content":"%s"}],"temperature":0.2,"max_tokens":128}' \
        "$1" "$stream" \
        "You are a careful assistant for an operations team. Answer in plain English, keep each answer under five sentences, cite the runbook section when one applies, and say so when you are not sure. Never invent command output; when a command is needed, show it on its own line. Context: the gateway sits in front of three model providers and one of them started returning 429 responses about twenty minutes ago. The dashboards show the retry rate climbing on the two healthy providers as well, and p99 latency for streaming requests has doubled. The on-call engineer wants to know whether the healthy providers are slowing down on their own, or whether retries are what is overloading them, and which alert thresholds to change so that this does not page twice." \
        "Which metric should I check first? Answer in one sentence." \
        >"$3"
}

# ---------------------------------------------------------------------------------------------
# set-up

ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -Sn)
IDLE_SKIP=""
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((IDLE_CONNS + 512)) ]; then
    IDLE_SKIP="open-file limit is $NOFILE (hard $(ulimit -Hn)); $((IDLE_CONNS + 512)) needed"
fi
[ "$NOFILE" = unlimited ] && NOFILE=1048576

# Other work on the machine takes CPU from the proxies unevenly and spoils the comparison; the
# 1-minute load average before anything of ours runs says how quiet the machine was.
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$LOAD_START" 'BEGIN {exit !(l > 1.0)}'; then
    log "warning: load average is $LOAD_START before the benchmark starts; other work will skew the figures"
fi
log "temp dir $TMP"
cc -O2 -std=c17 -Wall -Wextra -D_GNU_SOURCE -o "$TMP/bench_client" "$BENCH/bench_client.c" ||
    die "cannot compile bench/bench_client.c"

make_body bench 0 "$TMP/body.json"
make_body bench 1 "$TMP/body-stream.json"
make_body bench-slow 0 "$TMP/body-slow.json"
make_body bench-drip 1 "$TMP/body-drip.json"
# The translation path: an OpenAI client served by a model of the Anthropic dialect.
make_body bench-anthropic 0 "$TMP/body-xl.json"
make_body bench-anthropic 1 "$TMP/body-xs.json"
# Virtual keys: a priced model, called with a key that has a budget and limits.
make_body bench-priced 0 "$TMP/body-vk.json"

FAKE_PORT=$(pick_port 21000)
NGINX_PORT=$(pick_port 22000)
NGINX_IDLE_PORT=$(pick_port 22500)
SB_PORT=$(pick_port 23000)
SB_IDLE_PORT=$(pick_port 23500)

REDIS_SETTING=""
VK_NOTE=""
if [ "${BENCH_REDIS:-0}" = 1 ]; then
    REDIS_PORT=$(pick_port 24000)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    STARTED+=("$REDIS_PID")
    PNAME[$REDIS_PID]=redis-server
    wait_for_line "$TMP/redis.log" "Ready to accept connections" "$REDIS_PID" "redis-server"
    REDIS_SETTING="  redis_url: redis://127.0.0.1:$REDIS_PORT"
    VK_NOTE=", shared in Redis"
fi

# The upstream.
"$FAKE_BIN" --port "$FAKE_PORT" --threads "$FAKE_THREADS" --quiet >"$TMP/fake.log" 2>&1 &
FAKE_PID=$!
STARTED+=("$FAKE_PID")
PNAME[$FAKE_PID]=fake-provider
wait_for_line "$TMP/fake.log" "fake-provider listening on" "$FAKE_PID" "fake-provider"
FAKE_PIDS=("$FAKE_PID")
log "fake-provider ($FAKE_THREADS thread(s)) on 127.0.0.1:$FAKE_PORT"

# The floor: nginx. start_nginx NAME PORT WORKER_CONNECTIONS sets NGX_PID and NGX_WORKERS.
start_nginx() {
    local name=$1 port=$2 slots=$3
    sed -e "s|@TMP@|$TMP|g" -e "s|@NAME@|$name|g" -e "s|@WORKERS@|$WORKERS|g" \
        -e "s|@NOFILE@|$NOFILE|g" -e "s|@WORKER_CONNECTIONS@|$slots|g" \
        -e "s|@FAKE_PORT@|$FAKE_PORT|g" -e "s|@PORT@|$port|g" -e "s|@SLOW_MS@|$SLOW_MS|g" \
        -e "s|@DRIP_MS@|$DRIP_MS|g" -e "s|sk-bench-provider|$PROVIDER_KEY|g" \
        "$BENCH/nginx.conf.in" >"$TMP/$name.conf"
    "$NGINX_BIN" -t -q -p "$TMP" -c "$TMP/$name.conf" -e "$TMP/$name-error.log" ||
        die "generated $name.conf is invalid"
    "$NGINX_BIN" -p "$TMP" -c "$TMP/$name.conf" -e "$TMP/$name-error.log" >"$TMP/$name.out" 2>&1 &
    NGX_PID=$!
    STARTED+=("$NGX_PID")
    wait_for_port "$port" "$NGX_PID" "$name"
    for _ in $(seq 1 50); do
        mapfile -t NGX_WORKERS < <(pgrep -P "$NGX_PID")
        [ "${#NGX_WORKERS[@]}" -ge "$WORKERS" ] && break
        sleep 0.1
    done
    [ "${#NGX_WORKERS[@]}" -eq "$WORKERS" ] ||
        die "$name started ${#NGX_WORKERS[@]} workers, expected $WORKERS"
    STARTED+=("${NGX_WORKERS[@]}")
    log "$name (master $NGX_PID, workers ${NGX_WORKERS[*]}, $slots connection slots each) on 127.0.0.1:$port"
}

# Stops what start_nginx started (the master takes its workers with it).
stop_nginx() { # master workers...
    local pid
    kill -TERM "$1" 2>/dev/null || true
    for pid in "$@"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    wait "$1" 2>/dev/null || true
    for pid in "$@"; do
        forget "$pid"
    done
}

NGINX_SLOTS=1024
start_nginx nginx "$NGINX_PORT" "$NGINX_SLOTS"
NGINX_PID=$NGX_PID
PNAME[$NGINX_PID]=nginx
NGINX_WORKERS=("${NGX_WORKERS[@]}")

# start_switchboard NAME PORT: writes NAME.yaml, starts it, waits for its "listening on" line
# and sets SBX_PID.
start_switchboard() {
    local name=$1 port=$2
    cat >"$TMP/$name.yaml" <<EOF
model_list:
  - model_name: bench
    litellm_params:
      model: openai/gpt-fake
      api_base: http://127.0.0.1:$FAKE_PORT/v1
      api_key: $PROVIDER_KEY
  - model_name: bench-slow
    litellm_params:
      model: openai/gpt-fake
      api_base: http://127.0.0.1:$FAKE_PORT/_f/delay_ms=$SLOW_MS/v1
      api_key: $PROVIDER_KEY
  - model_name: bench-drip
    litellm_params:
      model: openai/gpt-fake
      api_base: http://127.0.0.1:$FAKE_PORT/_f/drip_ms=$DRIP_MS/v1
      api_key: $PROVIDER_KEY
  - model_name: bench-anthropic
    litellm_params:
      model: anthropic/claude-fake
      api_base: http://127.0.0.1:$FAKE_PORT
      api_key: $PROVIDER_KEY
  - model_name: bench-priced
    litellm_params:
      model: openai/gpt-fake
      api_base: http://127.0.0.1:$FAKE_PORT/v1
      api_key: $PROVIDER_KEY
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
general_settings:
  master_key: $MASTER_KEY
  database_url: sqlite://$TMP/$name.db
$REDIS_SETTING
server:
  host: 127.0.0.1
  port: $port
  workers: $WORKERS
  access_log: $TMP/$name-access.log
  upstream_http1: $UPSTREAM_HTTP1
EOF
    "$SB_BIN" --check-config "$TMP/$name.yaml" >"$TMP/$name-check.log" 2>&1 || {
        cat "$TMP/$name-check.log" >&2
        die "switchboard rejected the generated $name.yaml"
    }
    "$SB_BIN" --config "$TMP/$name.yaml" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    SBX_PID=$!
    STARTED+=("$SBX_PID")
    PNAME[$SBX_PID]=$name
    wait_for_line "$TMP/$name.err" '"msg": ?"listening on ' "$SBX_PID" "$name"
}

PROXIES=(nginx switchboard)
start_switchboard switchboard "$SB_PORT"
SB_PID=$SBX_PID
sleep 0.5
SB_IDLE_RSS=$(status_kib VmRSS "$SB_PID")
log "switchboard (pid $SB_PID) on 127.0.0.1:$SB_PORT, idle RSS $SB_IDLE_RSS KiB"
NGINX_IDLE_RSS=$(status_kib VmRSS "${NGINX_WORKERS[@]}")

declare -A PORT=([nginx]=$NGINX_PORT [switchboard]=$SB_PORT)
declare -A CPU_PIDS HWM_PIDS
CPU_PIDS[nginx]="$NGINX_PID ${NGINX_WORKERS[*]}"
HWM_PIDS[nginx]="${NGINX_WORKERS[*]}"
CPU_PIDS[switchboard]=$SB_PID
HWM_PIDS[switchboard]=$SB_PID

# Each proxy must answer the exact requests the load will send before any load starts.
probe() { # proxy path body
    local code
    code=$(curl -sS -o "$TMP/probe.out" -w '%{http_code}' --max-time 10 \
        -H "Authorization: Bearer $MASTER_KEY" -H 'Content-Type: application/json' \
        --data-binary "@$3" "http://127.0.0.1:${PORT[$1]}$2") || code=000
    if [ "$code" != 200 ]; then
        head -c 600 "$TMP/probe.out" >&2 2>/dev/null || true
        die "probe of $1 $2 ($(basename "$3")) answered $code"
    fi
    # Whole answers, not just a status: a stream must end with [DONE], a reply be a completion.
    local want='"object": *"chat.completion"'
    grep -q '"stream":true' "$3" && want='^data: \[DONE\]'
    grep -Eq "$want" "$TMP/probe.out" || {
        head -c 600 "$TMP/probe.out" >&2
        die "probe of $1 $2 ($(basename "$3")): the answer lacks $want"
    }
}

# ---------------------------------------------------------------------------------------------
# scenarios: id, label, connections, body, nginx path, switchboard path

# xl64 and xs64: switchboard translates OpenAI to the Anthropic dialect and back; nginx, which
# cannot translate, proxies the same body to the fake's OpenAI endpoint, so the ratio is the
# cost of translation over plain proxying.
read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-ns16 ns64 ns256 st64 slow256 xl64 xs64 vk64}"
declare -A S_LABEL=([ns16]="non-stream, 16 conns" [ns64]="non-stream, 64 conns"
    [ns256]="non-stream, 256 conns" [st64]="stream, 64 conns"
    [slow256]="upstream +${SLOW_MS} ms, 256 conns"
    [xl64]="translated to Anthropic, non-stream, 64 conns"
    [xs64]="translated to Anthropic, stream, 64 conns"
    [vk64]="virtual key (budget, limits, spend ledger$VK_NOTE), non-stream, 64 conns")
declare -A S_CONNS=([ns16]=16 [ns64]=64 [ns256]=256 [st64]=64 [slow256]=256 [xl64]=64 [xs64]=64
    [vk64]=64)
declare -A S_BODY=([ns16]=body.json [ns64]=body.json [ns256]=body.json [st64]=body-stream.json
    [slow256]=body-slow.json [xl64]=body-xl.json [xs64]=body-xs.json [vk64]=body-vk.json)
# shellcheck disable=SC2034 # read through the nameref in scenario_path
declare -A S_PATH_nginx=([ns16]=/v1/chat/completions [ns64]=/v1/chat/completions
    [ns256]=/v1/chat/completions [st64]=/stream/v1/chat/completions
    [slow256]=/slow/v1/chat/completions [xl64]=/v1/chat/completions
    [xs64]=/stream/v1/chat/completions [vk64]=/v1/chat/completions)
# shellcheck disable=SC2034
declare -A S_PATH_switchboard=([ns16]=/v1/chat/completions [ns64]=/v1/chat/completions
    [ns256]=/v1/chat/completions [st64]=/v1/chat/completions [slow256]=/v1/chat/completions
    [xl64]=/v1/chat/completions [xs64]=/v1/chat/completions [vk64]=/v1/chat/completions)

for s in "${SCENARIOS[@]}"; do
    [ -n "${S_CONNS[$s]:-}" ] || die "unknown scenario '$s' in BENCH_SCENARIOS"
done

scenario_path() { # proxy scenario
    local -n paths="S_PATH_$1"
    echo "${paths[$2]}"
}

for proxy in "${PROXIES[@]}"; do
    for s in ns16 st64 slow256 xl64 xs64; do
        probe "$proxy" "$(scenario_path "$proxy" "$s")" "$TMP/${S_BODY[$s]}"
    done
done
log "probes: every proxy answers each request kind with 200 and a complete reply or stream"

# A virtual key with a budget and limits far above what the run spends or sends, so that every
# request goes through admission, reservation, settlement and the spend journal.
VIRTUAL_KEY=$(curl -sS --max-time 10 -H "Authorization: Bearer $MASTER_KEY" \
    -H 'Content-Type: application/json' \
    -d '{"key_alias":"bench","max_budget":1000000,"rpm_limit":100000000,"tpm_limit":100000000000,"max_parallel_requests":100000}' \
    "http://127.0.0.1:$SB_PORT/key/generate" | sed -n 's/.*"key": *"\(sk-[^"]*\)".*/\1/p')
[ -n "$VIRTUAL_KEY" ] || die "could not create a virtual key through /key/generate"
curl -sS -o "$TMP/probe.out" -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $VIRTUAL_KEY" \
    -H 'Content-Type: application/json' --data-binary "@$TMP/body-vk.json" \
    "http://127.0.0.1:$SB_PORT/v1/chat/completions" | grep -q 200 || die "the virtual key's probe failed"

declare -A R # R[scenario,proxy,field]
CLK_TCK=$(getconf CLK_TCK)

# wrk_once OUT CONNS SECONDS URL BODY [--latency]: runs wrk, bounded, and checks its summary.
wrk_once() {
    local out=$1 conns=$2 secs=$3 url=$4 body=$5
    shift 5
    run_waited env BENCH_BODY="$body" BENCH_KEY="${WRK_KEY:-$MASTER_KEY}" timeout -k 5 $((secs + 30)) \
        wrk -t"$WRK_THREADS" -c"$conns" -d"${secs}s" --timeout 5s "$@" -s "$BENCH/post.lua" \
        "$url" >"$out" 2>&1 || {
        cat "$out" >&2
        die "wrk failed against $url"
    }
    grep -q '^WRK ' "$out" || {
        cat "$out" >&2
        die "wrk printed no summary for $url"
    }
}

# wrk_field OUT NAME: one key=value from the WRK summary line.
wrk_field() {
    awk -v k="$2" '/^WRK / {for (i = 2; i <= NF; i++) {split($i, kv, "="); if (kv[1] == k) print kv[2]}}' "$1"
}

wrk_errors() { # OUT -> "N details"
    awk '/^WRK / {t = 0; d = ""; for (i = 2; i <= NF; i++) {split($i, kv, "=");
        if (kv[1] ~ /^err_/ && kv[2] > 0) {t += kv[2]; d = d " " substr(kv[1], 5) "=" kv[2]}}
        print t d}' "$1"
}

# wrk counts only statuses of 400 and more; the access logs (both one JSON line per request)
# give every status, so any non-2xx answer during a run is caught whatever wrk thinks of it.
# 499 is left out: both proxies log it for the requests wrk abandons when its time is up.
declare -A ACCESS_LOG=([nginx]=$TMP/nginx-access.log [switchboard]=$TMP/switchboard-access.log)
log_size() { stat -c %s "$1" 2>/dev/null || echo 0; }
non2xx_since() { # file byte-offset
    tail -c +$(($2 + 1)) "$1" 2>/dev/null | grep '"status":[013-9][0-9][0-9]' |
        grep -vc '"status":499' || true
}

run_scenario() { # scenario proxy
    local s=$1 proxy=$2 conns=${S_CONNS[$1]} body=$TMP/${S_BODY[$1]}
    local url
    url="http://127.0.0.1:${PORT[$proxy]}$(scenario_path "$proxy" "$s")"
    local cpu_pids hwm_pids c0 c1 f0 f1 errs out=$TMP/wrk-$s-$proxy.txt
    read -r -a cpu_pids <<<"${CPU_PIDS[$proxy]}"
    read -r -a hwm_pids <<<"${HWM_PIDS[$proxy]}"

    local log_start
    log_start=$(log_size "${ACCESS_LOG[$proxy]}")
    # vk64: switchboard is called with a virtual key (nginx, which has none, with the master).
    local WRK_KEY=$MASTER_KEY
    [ "$s" = vk64 ] && [ "$proxy" = switchboard ] && WRK_KEY=$VIRTUAL_KEY
    export WRK_KEY
    wrk_once "$TMP/wrk-$s-$proxy-warmup.txt" "$conns" "$WARMUP" "$url" "$body"
    errs=$(wrk_errors "$TMP/wrk-$s-$proxy-warmup.txt")
    [ "${errs%% *}" = 0 ] || FAILURES+=("$s via $proxy (warm-up):${errs#* }")

    reset_hwm "${hwm_pids[@]}"
    c0=$(cpu_ticks "${cpu_pids[@]}")
    f0=$(cpu_ticks "${FAKE_PIDS[@]}")
    wrk_once "$out" "$conns" "$DURATION" "$url" "$body" --latency
    c1=$(cpu_ticks "${cpu_pids[@]}")
    f1=$(cpu_ticks "${FAKE_PIDS[@]}")
    R[$s,$proxy,hwm]=$(status_kib VmHWM "${hwm_pids[@]}")

    local req dur
    req=$(wrk_field "$out" requests)
    dur=$(wrk_field "$out" duration_us)
    [ "$req" -gt 0 ] || die "no request completed in $s via $proxy"
    R[$s,$proxy,rps]=$(awk -v r="$req" -v d="$dur" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
    R[$s,$proxy,p50]=$(wrk_field "$out" p50_us)
    R[$s,$proxy,p99]=$(wrk_field "$out" p99_us)
    R[$s,$proxy,cpu]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN {printf "%.1f", t * 1e6 / hz / r}')
    R[$s,$proxy,fakecpu]=$(awk -v t=$((f1 - f0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN {printf "%.1f", t * 1e6 / hz / r}')
    errs=$(wrk_errors "$out")
    R[$s,$proxy,errors]=${errs%% *}
    [ "${errs%% *}" = 0 ] || FAILURES+=("$s via $proxy:${errs#* }")
    local bad
    bad=$(non2xx_since "${ACCESS_LOG[$proxy]}" "$log_start")
    [ "$bad" = 0 ] || FAILURES+=("$s via $proxy: $bad non-2xx responses in the access log")
    log "$(printf '%-28s %-11s %8s req/s  p50 %6s us  p99 %6s us  cpu %6s us/req  errors %s' \
        "${S_LABEL[$s]}" "$proxy" "${R[$s,$proxy,rps]}" "${R[$s,$proxy,p50]}" \
        "${R[$s,$proxy,p99]}" "${R[$s,$proxy,cpu]}" "${R[$s,$proxy,errors]}")"
    kill -0 "${cpu_pids[0]}" 2>/dev/null || die "$proxy died during $s"
}

for s in "${SCENARIOS[@]}"; do
    for proxy in "${PROXIES[@]}"; do
        run_scenario "$s" "$proxy"
    done
done

# ---------------------------------------------------------------------------------------------
# time to first byte of a stream, sequential requests on one keep-alive connection

declare -A TTFB_PATH=([nginx]=/drip/v1/chat/completions [switchboard]=/v1/chat/completions)
for proxy in "${PROXIES[@]}"; do
    out=$TMP/ttfb-$proxy.txt
    if ! run_waited timeout -k 5 120 "$TMP/bench_client" ttfb --port "${PORT[$proxy]}" \
        --path "${TTFB_PATH[$proxy]}" --body "$TMP/body-drip.json" --auth "$MASTER_KEY" \
        --count "$TTFB_COUNT" --warmup 20 >"$out" 2>"$out.err"; then
        head -n 5 "$out.err" >&2
        FAILURES+=("ttfb via $proxy: $(cat "$out")")
    fi
    R[ttfb,$proxy,p50]=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^p50_us=/) print substr($i, 8)}' "$out")
    R[ttfb,$proxy,p99]=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^p99_us=/) print substr($i, 8)}' "$out")
    log "stream TTFB via $proxy: $(cat "$out")"
done

# ---------------------------------------------------------------------------------------------
# idle keep-alive connections: RSS growth per connection

# idle_cost KEY PORT PID...: opens IDLE_CONNS keep-alive connections to PORT and sets
# R[idle,KEY,kib] to the growth of the summed RSS of PIDs per connection.
idle_cost() {
    local key=$1 port=$2 before after cpid line
    shift 2
    before=$(status_kib VmRSS "$@")
    "$TMP/bench_client" idle --port "$port" --path /health/liveliness \
        --count "$IDLE_CONNS" >"$TMP/idle-$key.txt" 2>"$TMP/idle-$key.err" &
    cpid=$!
    STARTED+=("$cpid")
    line=""
    for _ in $(seq 1 600); do
        line=$(grep '^idle ' "$TMP/idle-$key.txt" 2>/dev/null || true)
        [ -n "$line" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$line" ]; then
        FAILURES+=("idle connections via $key: the client did not finish opening them")
    else
        sleep 1 # let the proxy finish the last requests and settle
        after=$(status_kib VmRSS "$@")
        R[idle,$key,kib]=$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}')
        case $line in
        *" failed=0") ;;
        *) FAILURES+=("idle connections via $key: $line ($(head -n 1 "$TMP/idle-$key.err"))") ;;
        esac
        log "idle keep-alive via $key: $line, RSS $before -> $after KiB (${R[idle,$key,kib]} KiB/conn)"
    fi
    kill -TERM "$cpid" 2>/dev/null || true
    wait "$cpid" 2>/dev/null || true
    forget "$cpid"
    sleep 1 # the proxy closes its side before the next measurement
}
if [ -n "$IDLE_SKIP" ]; then
    log "skipping the idle-connection test: $IDLE_SKIP"
else
    # Fresh instances of both proxies. nginx needs a slot per connection, allocated when a
    # worker starts, so its second instance has room for all of them. What a parked connection costs nginx is then the
    # RSS growth while they are open plus its share of the larger start-up allocation.
    idle_slots=$((IDLE_CONNS + NGINX_SLOTS))
    start_nginx nginx-idle "$NGINX_IDLE_PORT" "$idle_slots"
    PNAME[$NGX_PID]=nginx-idle
    sleep 0.5
    big_rss=$(status_kib VmRSS "${NGX_WORKERS[@]}")
    R[idle,nginx,slot]=$(awk -v a="$big_rss" -v b="$NGINX_IDLE_RSS" -v n=$((WORKERS * IDLE_CONNS)) \
        'BEGIN {v = (a - b) / n; printf "%.2f", v < 0 ? 0 : v}')
    idle_cost nginx "$NGINX_IDLE_PORT" "${NGX_WORKERS[@]}"
    [ -n "${R[idle,nginx,kib]:-}" ] &&
        R[idle,nginx,total]=$(awk -v a="${R[idle,nginx,kib]}" -v b="${R[idle,nginx,slot]}" 'BEGIN {printf "%.2f", a + b}')
    log "nginx with $idle_slots slots per worker starts at $big_rss KiB (with $NGINX_SLOTS: $NGINX_IDLE_RSS KiB): ${R[idle,nginx,slot]} KiB per slot"
    stop_nginx "$NGX_PID" "${NGX_WORKERS[@]}"
    unset "PNAME[$NGX_PID]"
    # A fresh gateway too: the one that ran the load has freed memory it would reuse first.
    start_switchboard switchboard-idle "$SB_IDLE_PORT"
    sleep 0.5
    idle_cost switchboard "$SB_IDLE_PORT" "$SBX_PID"
    R[idle,switchboard,total]=${R[idle,switchboard,kib]:-}
    kill -TERM "$SBX_PID" 2>/dev/null || true
    wait "$SBX_PID" 2>/dev/null || true
    unset "PNAME[$SBX_PID]"
    forget "$SBX_PID"
fi

for proxy in "${PROXIES[@]}"; do
    read -r -a pids <<<"${CPU_PIDS[$proxy]}"
    kill -0 "${pids[0]}" 2>/dev/null || FAILURES+=("$proxy exited before the end of the run")
done

# ---------------------------------------------------------------------------------------------
# the table

fmt_ms() { awk -v u="$1" 'BEGIN {printf (u < 10000 ? "%.2f" : "%.1f"), u / 1000}'; }
fmt_mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
fmt_int() { awk -v n="$1" 'BEGIN {s = sprintf("%d", n); r = ""; while (length(s) > 3) {r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3)} print s r}'; }
ratio() { # sb nginx
    awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f×", a / b}'
}
cell() { # value sb-raw nginx-raw proxy
    if [ "$4" = switchboard ]; then
        printf '%s (%s)' "$1" "$(ratio "$2" "$3")"
    else
        printf '%s' "$1"
    fi
}

{
    echo "## switchboard vs nginx floor"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
        "$(nproc) cores ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))," \
        "$(uname -r). wrk -t$WRK_THREADS, ${WARMUP} s warm-up + ${DURATION} s per run;" \
        "$WORKERS proxy workers; fake-provider --threads $FAKE_THREADS;" \
        "switchboard's upstream client: $UPSTREAM_HTTP1."
    if awk -v l="$LOAD_START" 'BEGIN {exit !(l > 1.0)}'; then
        echo "**The machine was busy (load average $LOAD_START before the run started): other work took CPU unevenly; treat these figures as unreliable.**"
    else
        echo "Load average before the run: $LOAD_START."
    fi
    echo "Everything (load generator, proxy, upstream) shares the same cores: compare ratios, not absolutes."
    echo "Switchboard rows show the ratio to the nginx row above (req/s: higher is better; the rest: lower is better)."
    echo
    echo "| scenario | proxy | req/s | p50 ms | p99 ms | CPU µs/req | peak RSS MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for s in "${SCENARIOS[@]}"; do
        first=1
        for proxy in "${PROXIES[@]}"; do
            label=""
            [ "$first" = 1 ] && label=${S_LABEL[$s]}
            first=0
            echo "| $label | $proxy" \
                "| $(cell "$(fmt_int "${R[$s,$proxy,rps]}")" "${R[$s,$proxy,rps]}" "${R[$s,nginx,rps]}" "$proxy")" \
                "| $(cell "$(fmt_ms "${R[$s,$proxy,p50]}")" "${R[$s,$proxy,p50]}" "${R[$s,nginx,p50]}" "$proxy")" \
                "| $(cell "$(fmt_ms "${R[$s,$proxy,p99]}")" "${R[$s,$proxy,p99]}" "${R[$s,nginx,p99]}" "$proxy")" \
                "| $(cell "${R[$s,$proxy,cpu]}" "${R[$s,$proxy,cpu]}" "${R[$s,nginx,cpu]}" "$proxy")" \
                "| $(cell "$(fmt_mib "${R[$s,$proxy,hwm]}")" "${R[$s,$proxy,hwm]}" "${R[$s,nginx,hwm]}" "$proxy") |"
        done
    done
    echo
    echo "Stream time to first byte ($TTFB_COUNT sequential streaming requests on one keep-alive" \
        "connection, upstream events ${DRIP_MS} ms apart; request written → first SSE byte received):"
    echo
    echo "| proxy | TTFB p50 ms | TTFB p99 ms |"
    echo "|---|---:|---:|"
    for proxy in "${PROXIES[@]}"; do
        p50=${R[ttfb,$proxy,p50]:-}
        p99=${R[ttfb,$proxy,p99]:-}
        echo "| $proxy" \
            "| $(cell "$(awk -v u="${p50:-0}" 'BEGIN {printf "%.3f", u / 1000}')" "$p50" "${R[ttfb,nginx,p50]:-}" "$proxy")" \
            "| $(cell "$(awk -v u="${p99:-0}" 'BEGIN {printf "%.3f", u / 1000}')" "$p99" "${R[ttfb,nginx,p99]:-}" "$proxy") |"
    done
    echo
    echo "Memory:"
    echo
    echo "| proxy | RSS right after start MiB | RSS per idle keep-alive connection KiB ($IDLE_CONNS connections) |"
    echo "|---|---:|---:|"
    for proxy in "${PROXIES[@]}"; do
        if [ "$proxy" = switchboard ]; then idle_rss=$SB_IDLE_RSS; else idle_rss=$NGINX_IDLE_RSS; fi
        if [ -n "$IDLE_SKIP" ]; then
            per="skipped: $IDLE_SKIP"
        elif [ "$proxy" = nginx ]; then
            per="${R[idle,nginx,total]:-n/a} (${R[idle,nginx,kib]:-n/a} growth + ${R[idle,nginx,slot]:-n/a} preallocated slot)"
        else
            per=$(cell "${R[idle,$proxy,total]:-n/a}" "${R[idle,$proxy,total]:-}" "${R[idle,nginx,total]:-}" "$proxy")
        fi
        echo "| $proxy | $(cell "$(fmt_mib "$idle_rss")" "$idle_rss" "$NGINX_IDLE_RSS" "$proxy") | $per |"
    done
    echo
    echo "nginx: CPU is master + workers, RSS is the sum over its $WORKERS workers (worker_connections $NGINX_SLOTS);" \
        "access log on, one JSON line per request to a file, as switchboard's." \
        "For the idle connections a second nginx with $((IDLE_CONNS + NGINX_SLOTS)) slots per worker is used;" \
        "nginx allocates its slots when a worker starts, so its figure adds the per-slot share of that start-up growth."
    [ "$HWM_RESETS" = 1 ] || echo "Peak RSS could not be reset between scenarios: each figure is the peak since start."
    fake_cpu=""
    for s in "${SCENARIOS[@]}"; do
        for proxy in "${PROXIES[@]}"; do
            fake_cpu="$fake_cpu $s/$proxy=${R[$s,$proxy,fakecpu]}"
        done
    done
    echo "Upstream (fake-provider) CPU µs/req, for reference:$fake_cpu."
    if [ "${#FAILURES[@]}" -gt 0 ]; then
        echo
        echo "**Errors:**"
        for f in "${FAILURES[@]}"; do
            echo "- $f"
        done
    fi
} >"$TMP/table.md"

mkdir -p "$RESULTS_DIR/latest-raw"
cp "$TMP/table.md" "$RESULTS_DIR/latest.md"
# The raw wrk/client output and the generated configs, for reading a surprising figure later.
rm -f "$RESULTS_DIR/latest-raw/"*
for f in "$TMP"/wrk-*.txt "$TMP"/ttfb-*.txt "$TMP"/idle-*.txt "$TMP"/idle-*.err "$TMP"/nginx*.conf \
    "$TMP"/switchboard*.yaml "$TMP"/nginx*-error.log "$TMP"/switchboard*.err; do
    [ -f "$f" ] && cp "$f" "$RESULTS_DIR/latest-raw/"
done
cat "$TMP/table.md"
log "table written to ${RESULTS_DIR#"$ROOT"/}/latest.md (raw output in latest-raw/)"

if [ "${#FAILURES[@]}" -gt 0 ]; then
    log "${#FAILURES[@]} failure(s):"
    for f in "${FAILURES[@]}"; do
        log "  $f"
    done
    exit 1
fi
