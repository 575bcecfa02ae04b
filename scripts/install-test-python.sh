#!/usr/bin/env bash
# Installs the official `openai` Python SDK and the official Prometheus client, pinned, into
# <repo>/.ci-cache/pyenv: the client the server's OpenAI-compatible tests (tests/server_openai.rs)
# drive, and the parser that reads `GET /metrics` in tests/metrics.rs. Idempotent.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/pinned-venv.sh" pyenv "openai==1.109.1" \
    "prometheus-client==0.26.0"
