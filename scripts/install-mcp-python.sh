#!/usr/bin/env bash
# Installs the official MCP Python SDK (`mcp`) and the OpenAI Agents SDK (`openai-agents`),
# pinned, into <repo>/.ci-cache/mcpenv: the clients the MCP tests (tests/mcp_*.rs) drive
# through tests/mcp/*.py, over stdio and Streamable HTTP. Idempotent.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/pinned-venv.sh" mcpenv "mcp==2.3.0" "openai-agents==0.25.0"
