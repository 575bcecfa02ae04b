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

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The chaos run (tests/chaos.rs) is ignored in the suite while a rare drift no reported failure
# explains is open (issue 15, about 1 conversation in 5,000): run here, its verdict printed,
# not allowed to fail CI by chance. It runs first, so the suite's own result closes the output.
if ! bash scripts/with-postgres.sh cargo test --test chaos -- --ignored; then
  echo "test.sh: the chaos run found drift or a broken rule (known open: issue 15); see above" >&2
fi
# The PostgreSQL tests (reconcile) need a server: with-postgres.sh starts a throwaway one.
bash scripts/with-postgres.sh cargo test --all-targets
