#!/usr/bin/env bash
# Installs the third-party Stripe fakes the conformance tests compare against, into
# <repo>/.ci-cache (npm prefix and a Python virtualenv). Idempotent: a second run only checks.
set -euo pipefail

STRIPE_STATEFUL_MOCK_VERSION="0.0.16"
LOCALSTRIPE_VERSION="1.15.10"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$repo/.ci-cache"
npm_prefix="$cache/npm"
venv="$cache/venv"
mkdir -p "$cache"

# stripe-stateful-mock (npm): an Express server, started with `node <pkg>/dist/index.js`.
ssm_pkg="$npm_prefix/node_modules/stripe-stateful-mock/package.json"
if [ -f "$ssm_pkg" ] && grep -q "\"version\": \"$STRIPE_STATEFUL_MOCK_VERSION\"" "$ssm_pkg"; then
    echo "stripe-stateful-mock $STRIPE_STATEFUL_MOCK_VERSION already installed in $npm_prefix"
else
    command -v npm >/dev/null || { echo "install-peers: npm is required" >&2; exit 1; }
    echo "installing stripe-stateful-mock $STRIPE_STATEFUL_MOCK_VERSION into $npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error \
        "stripe-stateful-mock@$STRIPE_STATEFUL_MOCK_VERSION"
fi

# localstripe (PyPI): an aiohttp server, started with `<venv>/bin/localstripe --port N`.
if [ -x "$venv/bin/localstripe" ] \
    && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('localstripe') != '$LOCALSTRIPE_VERSION')" 2>/dev/null; then
    echo "localstripe $LOCALSTRIPE_VERSION already installed in $venv"
else
    command -v python3 >/dev/null || { echo "install-peers: python3 is required" >&2; exit 1; }
    echo "installing localstripe $LOCALSTRIPE_VERSION into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "localstripe==$LOCALSTRIPE_VERSION"
fi
