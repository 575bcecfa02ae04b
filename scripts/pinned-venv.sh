#!/usr/bin/env bash
# Usage: pinned-venv.sh NAME PACKAGE==VERSION...
# Makes <repo>/.ci-cache/NAME a Python virtual environment holding exactly these pinned
# versions; does nothing when it already does. The one installer behind the test scripts'
# Python clients (install-test-python.sh, install-mcp-python.sh).
set -euo pipefail

name="$1"
shift
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.ci-cache/$name"
mkdir -p "$repo/.ci-cache"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$@" 2>/dev/null <<'PY'
import importlib.metadata as m, sys
sys.exit(any(m.version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))
PY
then
    echo "$* already installed in $venv"
    exit 0
fi
command -v python3 >/dev/null || { echo "pinned-venv: python3 is required" >&2; exit 1; }
echo "installing $* into $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
