#!/usr/bin/env bash
# Installs the official `openai` Python SDK and the official Prometheus client, pinned, into
# <repo>/.ci-cache/pyenv: the client the server's OpenAI-compatible tests (tests/server_openai.rs)
# drive, and the parser that reads `GET /metrics` in tests/metrics.rs. Idempotent.
set -euo pipefail

OPENAI_VERSION="1.109.1"
PROMETHEUS_CLIENT_VERSION="0.26.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.ci-cache/pyenv"
mkdir -p "$repo/.ci-cache"

if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('openai') != '$OPENAI_VERSION' or m.version('prometheus-client') != '$PROMETHEUS_CLIENT_VERSION')" 2>/dev/null; then
    echo "openai $OPENAI_VERSION and prometheus-client $PROMETHEUS_CLIENT_VERSION already installed in $venv"
    exit 0
fi
command -v python3 >/dev/null || { echo "install-test-python: python3 is required" >&2; exit 1; }
echo "installing openai $OPENAI_VERSION and prometheus-client $PROMETHEUS_CLIENT_VERSION into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" \
    "prometheus-client==$PROMETHEUS_CLIENT_VERSION"
