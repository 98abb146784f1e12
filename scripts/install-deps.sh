#!/usr/bin/env bash
# Installs every Debian and npm package switchboard's build, tests and benchmark use.
# Idempotent: installs only what is missing, so `make run` and `make test` call it each time.
# Needs root (or sudo) the first time on a fresh Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build
  gcc make cmake pkg-config clang libclang-rt-14-dev clang-format
  # libraries (DESIGN.md, "Dependencies")
  libuv1-dev libcurl4-openssl-dev libssl-dev libjansson-dev libyaml-dev libpcre2-dev zlib1g-dev libsqlite3-dev libpq-dev libhiredis-dev
  # tests
  libcmocka-dev curl ca-certificates postgresql sqlite3 redis-server redis-tools
  # benchmark
  wrk nginx-light iproute2
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nginx-light's package starts a system nginx on port 80; the benchmark runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  systemctl stop nginx || true
fi

# npm packages for the end-to-end and integration tests (the official SDKs as clients).
if [ -f tests/package.json ]; then
  if [ ! -d tests/node_modules ] || [ tests/package-lock.json -nt tests/node_modules ]; then
    echo "install-deps: npm ci in tests/"
    (cd tests && npm ci --no-audit --no-fund --loglevel=error)
    touch tests/node_modules
  fi
fi
