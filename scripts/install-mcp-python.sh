#!/usr/bin/env bash
# Installs the official MCP Python SDK (`mcp`) and the OpenAI Agents SDK (`openai-agents`),
# pinned, into <repo>/.ci-cache/mcpenv: the clients the MCP tests (tests/mcp_*.rs) drive
# through tests/mcp/*.py, over stdio and Streamable HTTP. Idempotent.
set -euo pipefail

MCP_VERSION="2.3.0"
OPENAI_AGENTS_VERSION="0.25.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.ci-cache/mcpenv"
mkdir -p "$repo/.ci-cache"

if [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$MCP_VERSION' or m.version('openai-agents') != '$OPENAI_AGENTS_VERSION')" 2>/dev/null; then
    echo "mcp $MCP_VERSION and openai-agents $OPENAI_AGENTS_VERSION already installed in $venv"
    exit 0
fi
command -v python3 >/dev/null || { echo "install-mcp-python: python3 is required" >&2; exit 1; }
echo "installing mcp $MCP_VERSION and openai-agents $OPENAI_AGENTS_VERSION into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mcp==$MCP_VERSION" \
    "openai-agents==$OPENAI_AGENTS_VERSION"
