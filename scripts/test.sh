#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then checks format,
# lints and runs every test. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo is not installed; install Rust (1.89 or newer) first" >&2
  exit 2
fi

# Third-party Stripe fakes for the conformance tests (npm and PyPI, into .ci-cache/).
if [ -f scripts/install-peers.sh ]; then
  bash scripts/install-peers.sh
fi
# The official openai Python SDK, the client of the server's OpenAI-compatible tests.
bash scripts/install-test-python.sh
# The official MCP Python SDK and the OpenAI Agents SDK, the clients of tests/mcp_*.rs.
bash scripts/install-mcp-python.sh
# llama.cpp's llama-server and a small model for the live-model tests (tests/live_llama.rs),
# built once into a cache outside the clone (about 6 minutes on 2 cores, then only checked).
# A failed install does not stop the run: the live tests then fail and name the reason.
llama_dir="$(bash scripts/install-llama.sh --print-dir)"
if bash scripts/install-llama.sh; then
  # shellcheck disable=SC1091
  source "$llama_dir/env"
else
  ALTAN_PAY_LLAMA_INSTALL_ERROR="$(cat "$llama_dir/install-failed.txt" 2>/dev/null \
    || echo "scripts/install-llama.sh failed without saying why")"
  export ALTAN_PAY_LLAMA_INSTALL_ERROR
  echo "test.sh: $ALTAN_PAY_LLAMA_INSTALL_ERROR; the live-model tests will fail" >&2
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The library alone, as a crate using it with `default-features = false` builds it.
cargo clippy --lib --no-default-features --features scripted --quiet -- -D warnings
# The public surface is documented: the library denies missing docs, and rustdoc's own
# warnings (broken links to items) fail here.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --quiet
# The README's Rust examples and the library's doc examples compile and run.
cargo test --doc --quiet
# The PostgreSQL tests (reconcile, mirror, chaos) need a server: with-postgres.sh starts a throwaway one.
bash scripts/with-postgres.sh cargo test --all-targets
