#!/usr/bin/env bash
# CPU per conversation (issue 24), side by side: `altan-pay serve`, the in-process `Agent`
# (bench_altan) and the OpenAI Agents SDK (bench/python/runner.py), on the scenario of
# BENCHMARKS.md "Served path" (a product with a monthly and a yearly price; scripted model
# server and an `altan-pay gateway` process, so neither is counted), plus the fsync waits of
# the served path.
#
#   bash bench/cpu/run.sh          # a few minutes once built; raw lines in .ci-cache/bench-out/cpu/
#
# CPU is utime+stime of the measured process only:
# - serve: read from /proc/<pid>/stat before and after SHORT and LONG conversations on the same
#   running server (raw http.client requests, one new thread each); per conversation =
#   (cpu(LONG) - cpu(SHORT)) / (LONG - SHORT).
# - in process and Python: the whole process under /usr/bin/time, run once with SHORT and once
#   with LONG conversations; the difference of the two runs cancels start-up (and the Python
#   interpreter's imports) the same way.
# fsync waits: `strace -f -T -e trace=fsync,fdatasync` on serve for FSYNC_ROUNDS conversations
# (strace slows the process: only the count and the time inside each call are used), beside the
# wall time per conversation with the store on disk and on tmpfs (/dev/shm).
# REPS (default 3) repetitions; each figure is printed as median (min-max) over them.
# SHORT/LONG (default 20/120) conversations per run.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
out="$repo/.ci-cache/bench-out/cpu"
mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$repo/target}"
short="${SHORT:-20}"
long="${LONG:-120}"
reps="${REPS:-3}"
fsync_rounds="${FSYNC_ROUNDS:-20}"
OPENAI_AGENTS_VERSION="0.24.0"
OPENAI_VERSION="3.57.0"

bash scripts/install-test-python.sh > /dev/null
py="$repo/.ci-cache/pyenv/bin/python"
venv="$repo/.ci-cache/bench-venv"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('openai-agents') != '$OPENAI_AGENTS_VERSION')" 2>/dev/null; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "openai-agents==$OPENAI_AGENTS_VERSION" "openai==$OPENAI_VERSION"
fi

# SKIP_BUILD=1 runs binaries already in $CARGO_TARGET_DIR/release (e.g. those of an older commit).
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin altan-pay --example scripted_openai \
    --example bench_altan
bin="$target/release/altan-pay"
ex="$target/release/examples"
tck="$(getconf CLK_TCK)"

. "$repo/bench/cpu/common.sh"
# utime+stime of a running process, ms (every thread, as /proc/<pid>/stat counts them).
cpu_ms() { awk -v t="$tck" '{ print ($14 + $15) * 1000 / t }' "/proc/$1/stat"; }

model_port="$(free_port)"; gw_port="$(free_port)"
"$ex/scripted_openai" --addr "127.0.0.1:$model_port" 2> "$out/model.log" & pids+=($!)
"$bin" gateway --addr "127.0.0.1:$gw_port" 2> "$out/gateway.log" & pids+=($!)
wait_http "http://127.0.0.1:$model_port/calls"
wait_http "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id"
connect="$(curl -sf "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["stripe_connect_id"])')"
"$bin" prompt > "$out/prompt.txt"
"$bin" tools --json > "$out/tools.json"

serve_pid=""
serve() { # NAME DB: starts `altan-pay serve --sandbox`, sets $serve_url and $serve_pid
    local name="$1" db="$2"
    local port; port="$(free_port)"
    rm -f "$db" "$db-wal" "$db-shm"
    env OPENAI_BASE_URL="http://127.0.0.1:$model_port/v1" OPENAI_API_KEY=unused \
        "$bin" serve --sandbox --addr "127.0.0.1:$port" --db "$db" \
        --events-db "$db.events" 2> "$out/serve-$name.log" &
    serve_pid=$!; pids+=("$serve_pid")
    serve_url="http://127.0.0.1:$port"
    wait_http "$serve_url/healthz"
}
stop_serve() { kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; rm -f "$1" "$1-wal" "$1-shm" "$1.events"*; }
raw() { # TAG ROUNDS: conversations through the running serve; prints the client's JSON line
    "$py" bench/served/client.py raw --serve "$serve_url" --rounds "$2" --warmup 0 --tag "$1"
}
served_cpu() { # NAME DB REP
    local name="$1" db="$2" rep="$3"
    serve "$name" "$db"
    raw "$name-$rep-warm" 5 > /dev/null
    local c0 c1 c2
    c0="$(cpu_ms "$serve_pid")"
    raw "$name-$rep-s" "$short" > "$out/short.json"
    c1="$(cpu_ms "$serve_pid")"
    raw "$name-$rep-l" "$long" > "$out/long.json"
    c2="$(cpu_ms "$serve_pid")"
    python3 - "$name" "$rep" "$c0" "$c1" "$c2" "$short" "$long" "$out/long.json" >> "$out/results.jsonl" <<'PY'
import json, sys
name, rep, c0, c1, c2, short, long_, line = sys.argv[1:]
c0, c1, c2, short, long_ = float(c0), float(c1), float(c2), int(short), int(long_)
wall = json.load(open(line))["median_ms"]
print(json.dumps({"path": name, "rep": int(rep), "cpu_ms_per_conv": (c2 - c1) / long_,
                  "cpu_ms_per_conv_short": (c1 - c0) / short, "wall_ms": wall}))
PY
    stop_serve "$db"
}
common=(--model-url "http://127.0.0.1:$model_port/v1" --gateway "http://127.0.0.1:$gw_port"
    --account ws_bench --connect "$connect" --prompt "$out/prompt.txt" --tools "$out/tools.json"
    --conc 1 --warmup 2)
process_cpu() { # NAME REP [ENV...] -- COMMAND...: two run lengths, CPU difference per conversation
    local name="$1" rep="$2"; shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
    local n
    for n in "$short" "$long"; do
        env "${envs[@]}" /usr/bin/time -f "%U %S" -o "$out/time-$n.txt" "$@" "${common[@]}" \
            --rounds "$n" > "$out/line-$n.json"
    done
    python3 - "$name" "$rep" "$short" "$long" "$out" >> "$out/results.jsonl" <<'PY'
import json, statistics, sys
name, rep, short, long_, out = sys.argv[1:]
cpu = {n: sum(map(float, open(f"{out}/time-{n}.txt").read().split()[-2:])) * 1000 for n in (short, long_)}
line = json.loads(open(f"{out}/line-{long_}.json").read().strip().splitlines()[-1])
print(json.dumps({"path": name, "rep": int(rep),
                  "cpu_ms_per_conv": (cpu[long_] - cpu[short]) / (int(long_) - int(short)),
                  "wall_ms": statistics.median(line["conv_ms"])}))
PY
}

disk_db="$out/serve.db"
shm_db="/dev/shm/altan-pay-cpu-bench-$$.db"
: > "$out/results.jsonl"
for rep in $(seq "$reps"); do
    echo "== repetition $rep of $reps" >&2
    served_cpu "serve, store on disk" "$disk_db" "$rep"
    served_cpu "serve, store on tmpfs" "$shm_db" "$rep"
    process_cpu "in-process Agent, sessions in memory" "$rep" BENCH_STORE=memory -- "$ex/bench_altan"
    process_cpu "in-process Agent, SQLite on disk" "$rep" BENCH_STORE=sqlite TMPDIR="$out" -- "$ex/bench_altan"
    process_cpu "in-process Agent, SQLite on tmpfs" "$rep" BENCH_STORE=sqlite TMPDIR=/dev/shm -- "$ex/bench_altan"
    process_cpu "Python OpenAI Agents SDK" "$rep" PYTHONDONTWRITEBYTECODE=1 -- "$venv/bin/python" bench/python/runner.py
done

# The commits a served conversation waits for: fsync calls of serve and the time inside them.
serve fsync "$disk_db"
raw fsync-warm 5 > /dev/null
strace -f -T -e trace=fsync,fdatasync -p "$serve_pid" -o "$out/strace.txt" 2> /dev/null & strace_pid=$!
sleep 0.5
raw fsync "$fsync_rounds" > /dev/null
kill "$strace_pid"; wait "$strace_pid" 2>/dev/null || true
stop_serve "$disk_db"

python3 - "$out/results.jsonl" "$out/strace.txt" "$fsync_rounds" "$short" "$long" <<'PY'
import json, re, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rounds, short, long_ = int(sys.argv[3]), sys.argv[4], sys.argv[5]
def fig(values):
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"
paths = list(dict.fromkeys(r["path"] for r in rows))
print(f"CPU per conversation, ms: utime+stime, difference of {long_} and {short} conversations;"
      " median (min-max) of the repetitions")
print(f"{'path':40} {'CPU ms/conv':>22} {'wall ms/conv':>22}")
wall = {}
for p in paths:
    rs = [r for r in rows if r["path"] == p]
    wall[p] = statistics.median(r["wall_ms"] for r in rs)
    print(f"{p:40} {fig([r['cpu_ms_per_conv'] for r in rs]):>22} {fig([r['wall_ms'] for r in rs]):>22}")
waits = [float(m.group(1)) * 1000 for m in
         (re.search(r"<([0-9.]+)>\s*$", l) for l in open(sys.argv[2])
          if re.search(r"\b(fsync|fdatasync)\(", l)) if m]
if waits:
    per = sum(waits) / rounds
    print(f"fsync waits of serve (strace, {rounds} conversations): {len(waits) / rounds:.2f} per conversation,"
          f" {statistics.median(waits):.2f} ms median each, {per:.2f} ms per conversation")
d, t = "serve, store on disk", "serve, store on tmpfs"
if d in wall and t in wall:
    print(f"served wall on disk minus on tmpfs: {wall[d] - wall[t]:.2f} ms per conversation")
PY
