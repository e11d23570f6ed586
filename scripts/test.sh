#!/usr/bin/env bash
# Runs everything CI runs, on a fresh machine too: installs what the tests
# need (nats-server, via scripts/setup.sh), then checks formatting, lints,
# the sans-IO rule of src/proto, the API docs' links, and the whole test
# suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/setup.sh ]; then
  scripts/setup.sh --quiet
fi

echo "== sans-IO check: src/proto must not touch tokio, async-nats, clocks or unseeded RNGs"
if grep -rnE 'tokio|async_nats|Instant::now|SystemTime::now|thread_rng|rand::rng\(|OsRng' src/proto; then
  echo "src/proto is the sans-IO core: move IO, clock reads and OS randomness to a driver" >&2
  exit 1
fi

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== the library stands apart: no CLI, benchmark or simulator crates without features"
cargo check -p swp --no-default-features --quiet
if cargo tree -p swp --no-default-features -e normal | grep -E "clap|indicatif|simnet|tracing-subscriber"; then
  echo "the swp library (default features off) must not depend on the tools' crates" >&2
  exit 1
fi

echo "== cargo doc (broken or private intra-doc links fail the run)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

echo "== benchmarks, as quick smoke runs (full runs: cargo bench)"
cargo test --workspace --benches -- --test

# Every wait has a bound, the suite's too: a hanging test fails the run
# with a message instead of eating CI's 90 minutes (the suite takes ~3).
bounded() {
  local limit=$1
  shift
  local rc=0
  timeout "$limit" "$@" || rc=$?
  if [ "$rc" -eq 124 ]; then
    echo "'$*' took longer than ${limit}s: some test hangs (run it alone to see which)" >&2
  fi
  return "$rc"
}

echo "== cargo test"
bounded 1800 cargo test --workspace --lib --bins --tests --examples
bounded 900 cargo test --workspace --doc
