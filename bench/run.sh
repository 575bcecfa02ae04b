#!/usr/bin/env bash
# Runs every benchmark of issue 7 and rewrites BENCHMARKS.md (keeping its "Sandbox gateway"
# section). Installs what it needs into .ci-cache/: a Python venv with the OpenAI Agents SDK,
# Stripe's agent toolkit (npm) for the token comparison; builds altan-pay's bench examples and
# the rig peer (bench/rig-peer, its own Cargo project) in release.
#
#   bash bench/run.sh            # about 5 minutes once built
#
# CARGO_TARGET_DIR is honoured for the crate; the rig peer builds into $RIG_TARGET_DIR
# (default .ci-cache/rig-target). Servers listen on 127.0.0.1 only and are stopped on exit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cache="$repo/.ci-cache"
out="$cache/bench-out"
mkdir -p "$cache" "$out"
target="${CARGO_TARGET_DIR:-$repo/target}"
rig_target="${RIG_TARGET_DIR:-$cache/rig-target}"
OPENAI_AGENTS_VERSION="0.24.0"
OPENAI_VERSION="3.57.0"
STRIPE_TOOLKIT_VERSION="0.6.1"   # the peer configuration of issue 13 (hard-coded tools)

echo "== install"
venv="$cache/bench-venv"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('openai-agents') != '$OPENAI_AGENTS_VERSION')" 2>/dev/null; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "openai-agents==$OPENAI_AGENTS_VERSION" "openai==$OPENAI_VERSION"
fi
npm_prefix="$cache/npm-toolkit"
if ! grep -q "\"version\": \"$STRIPE_TOOLKIT_VERSION\"" "$npm_prefix/node_modules/@stripe/agent-toolkit/package.json" 2>/dev/null; then
    npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error --ignore-scripts \
        "@stripe/agent-toolkit@$STRIPE_TOOLKIT_VERSION"
fi
NODE_PATH="$npm_prefix/node_modules" node bench/tokens/stripe_toolkit_tools.js > "$out/stripe_tools.json"

echo "== build"
CARGO_TARGET_DIR="$target" cargo build --release --quiet --bin altan-pay \
    --example scripted_openai --example bench_floor --example bench_altan \
    --example bench_tokens --example bench_session --example server_load
(cd bench/rig-peer && CARGO_TARGET_DIR="$rig_target" cargo build --release --quiet)
bin="$target/release"
ex="$target/release/examples"

echo "== servers"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gw_port="$(free_port)"; model_port="$(free_port)"
"$bin/altan-pay" gateway --addr "127.0.0.1:$gw_port" > "$out/gateway.log" 2>&1 & pids+=($!)
"$ex/scripted_openai" --addr "127.0.0.1:$model_port" > "$out/model.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id" > "$out/connect.json" \
        && curl -sf "http://127.0.0.1:$model_port/calls" > /dev/null && break
    sleep 0.1
done
connect="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stripe_connect_id"])' "$out/connect.json")"
"$bin/altan-pay" prompt > "$out/prompt.txt"
"$bin/altan-pay" tools --json > "$out/tools.json"

echo "== side by side"
common=(--model-url "http://127.0.0.1:$model_port/v1" --gateway "http://127.0.0.1:$gw_port"
    --account ws_bench --connect "$connect" --prompt "$out/prompt.txt" --tools "$out/tools.json")
: > "$out/side.jsonl"
run_one() { # name conc rep command...
    local name="$1" conc="$2" rep="$3"; shift 3
    local rounds=30 warmup=3
    if [ "$conc" -gt 1 ]; then rounds=8; warmup=1; fi
    local before after
    before="$(curl -sf "http://127.0.0.1:$model_port/calls")"
    /usr/bin/time -v -o "$out/time.txt" "$@" "${common[@]}" --conc "$conc" --rounds "$rounds" \
        --warmup "$warmup" > "$out/line.json"
    after="$(curl -sf "http://127.0.0.1:$model_port/calls")"
    python3 - "$name" "$rep" "$before" "$after" "$out/line.json" "$out/time.txt" >> "$out/side.jsonl" <<'PY'
import json, re, sys
name, rep, before, after, line, timef = sys.argv[1:]
d = json.loads(open(line).read().strip().splitlines()[-1])
t = open(timef).read()
d["name"] = name; d["rep"] = int(rep)
d["peak_rss_kb"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
w = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+(?:\.\d+)?)$", t, re.M)
d["process_s"] = float(w.group(1) or 0) * 60 + float(w.group(2))
convs = (d["rounds"] + (3 if d["conc"] == 1 else 1)) * d["conc"]
d["model_calls_per_conv"] = (int(after) - int(before)) / convs
print(json.dumps(d))
PY
    echo "  $name conc=$conc rep=$rep done"
}
for conc in 1 16; do
    for rep in 1 2 3; do
        run_one floor "$conc" "$rep" "$ex/bench_floor"
        run_one altan "$conc" "$rep" "$ex/bench_altan"
        BENCH_COMPACT=1 run_one altan_compact "$conc" "$rep" "$ex/bench_altan"
        BENCH_STORE=sqlite run_one altan_sqlite "$conc" "$rep" "$ex/bench_altan"
        run_one rig "$conc" "$rep" "$rig_target/release/rig-peer"
        run_one python "$conc" "$rep" "$venv/bin/python" bench/python/runner.py
    done
done

echo "== profile (perf) of this runtime, 1 conversation at a time"
if command -v perf >/dev/null && perf record -o "$out/perf-probe.data" true >/dev/null 2>&1; then
    perf record -F 2000 -g -o "$out/perf.data" "$ex/bench_altan" "${common[@]}" --conc 1 \
        --rounds 300 --warmup 3 > /dev/null 2> "$out/perf-record.log" || true
    perf report -i "$out/perf.data" --no-children -g none --sort dso,symbol --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | cut -c1-160 | sed 's/ *$//' | head -25 > "$out/perf-top.txt" || true
    perf report -i "$out/perf.data" --no-children -g none --sort dso --stdio 2>/dev/null \
        | grep -E '^ +[0-9]' | sed 's/ *$//' | head -8 > "$out/perf-dso.txt" || true
else
    echo "perf not available" > "$out/perf-top.txt"; : > "$out/perf-dso.txt"
fi
cleanup; pids=()

echo "== engine (criterion)"
rm -rf "$target/criterion"
CARGO_TARGET_DIR="$target" cargo bench --quiet --bench engine -- --noplot > "$out/criterion.txt" 2>&1

echo "== tokens, session"
rm -rf "$out/before" && mkdir -p "$out/before"
git archive afa041a fixtures/transcripts | tar -x -C "$out/before"
"$ex/bench_tokens" --stripe "$out/stripe_tools.json" --seed ../shared/spec/altan-pay-seed-prompt.md \
    --scenarios "$out/before/fixtures/transcripts" --scenarios fixtures/transcripts > "$out/tokens.json"
for rep in 1 2 3; do "$ex/bench_session"; done > "$out/session.jsonl"

echo "== chat server (server_load, 3 runs)"
for rep in 1 2 3; do "$ex/server_load" --idle 10000 > "$out/server-$rep.txt"; done

echo "== report"
{
    echo "nproc=$(nproc)"
    echo "cpu=$(lscpu | grep 'Model name' | sed 's/.*: *//')"
    echo "mem=$(free -h | awk '/^Mem:/{print $2}')"
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "rustc=$(rustc --version)"
    echo "python=$("$venv/bin/python" --version 2>&1)"
    echo "openai_agents=$OPENAI_AGENTS_VERSION"
    echo "stripe_toolkit=$STRIPE_TOOLKIT_VERSION"
} > "$out/machine.txt"
python3 bench/report.py "$out" "$target/criterion" BENCHMARKS.md
echo "BENCHMARKS.md written"
