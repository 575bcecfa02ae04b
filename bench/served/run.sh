#!/usr/bin/env bash
# The served path against its floor (BENCHMARKS.md, "Served path"): one create-a-product-with-
# two-prices conversation through `altan-pay serve --sandbox`, driven by the official openai
# Python client (and by a bare http.client request, to tell the client's cost from the
# server's), against the same six requests made by a bare Python client itself. Then the same
# conversations with the spans exported to a local collector (bench/served/spans.rs), which
# reports where the time of one conversation goes.
#
#   bash bench/served/run.sh          # about a minute once built; results in .ci-cache/bench-out/served/
#
# Everything listens on 127.0.0.1 and is stopped on exit. ROUNDS (default 60) per run, 3 runs.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
out="$repo/.ci-cache/bench-out/served"
mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$repo/target}"
rounds="${ROUNDS:-60}"
bash scripts/install-test-python.sh > /dev/null
py="$repo/.ci-cache/pyenv/bin/python"

cargo build --release --quiet --bin altan-pay --example scripted_openai --example served_spans \
    --example bench_floor --example bench_altan
bin="$target/release/altan-pay"
ex="$target/release/examples"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" > /dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

model_port="$(free_port)"; gw_port="$(free_port)"; spans_port="$(free_port)"
"$ex/scripted_openai" --addr "127.0.0.1:$model_port" 2> "$out/model.log" & pids+=($!)
"$bin" gateway --addr "127.0.0.1:$gw_port" 2> "$out/gateway.log" & pids+=($!)
"$ex/served_spans" --addr "127.0.0.1:$spans_port" 2> "$out/spans.log" & pids+=($!)
wait_http "http://127.0.0.1:$model_port/calls"
wait_http "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id"
connect="$(curl -sf "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["stripe_connect_id"])')"
"$bin" prompt > "$out/prompt.txt"
"$bin" tools --json > "$out/tools.json"

# serve NAME DB [ENV...]: starts `altan-pay serve --sandbox` on a fresh port, sets $serve_url.
serve_pid=""
serve() {
    local name="$1" db="$2"; shift 2
    local port; port="$(free_port)"
    rm -f "$db" "$db-wal" "$db-shm"
    env OPENAI_BASE_URL="http://127.0.0.1:$model_port/v1" OPENAI_API_KEY=unused "$@" \
        "$bin" serve --sandbox --addr "127.0.0.1:$port" --db "$db" \
        --events-db "$out/events-$name.db" 2> "$out/serve-$name.log" &
    serve_pid=$!; pids+=("$serve_pid")
    serve_url="http://127.0.0.1:$port"
    wait_http "$serve_url/healthz"
}
stop_serve() { kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; }

: > "$out/results.jsonl"
run() { # TAG MODE [ARGS...]
    local tag="$1" mode="$2"; shift 2
    "$py" bench/served/client.py "$mode" --rounds "$rounds" --tag "$tag" "$@" >> "$out/results.jsonl"
}
# The in-process path on the same servers at the same time: bench_altan (Agent in process,
# sessions in memory or in the durable SQLite store under TMPDIR) and its reqwest floor.
inproc() { # TAG [ENV...] -- COMMAND
    local tag="$1"; shift
    env "$@" --model-url "http://127.0.0.1:$model_port/v1" --gateway "http://127.0.0.1:$gw_port" \
        --account ws_bench --connect "$connect" --prompt "$out/prompt.txt" --tools "$out/tools.json" \
        --conc 1 --rounds "$rounds" --warmup 5 \
        | python3 -c 'import json, statistics, sys
d = json.loads(sys.stdin.read().strip().splitlines()[-1])
print(json.dumps({"mode": sys.argv[1], "tag": sys.argv[2], "median_ms": statistics.median(d["conv_ms"])}))' \
            "${tag%%@*}" "${tag#*@}" >> "$out/results.jsonl"
}
disk_db="$out/serve.db"
shm_db="/dev/shm/altan-pay-served-bench-$$.db"
for rep in 1 2 3; do
    inproc "rust_floor@disk-$rep" "$ex/bench_floor"
    inproc "inproc_memory@disk-$rep" "$ex/bench_altan"
    inproc "inproc_sqlite@disk-$rep" BENCH_STORE=sqlite TMPDIR="$out" "$ex/bench_altan"
    inproc "inproc_sqlite@shm-$rep" BENCH_STORE=sqlite TMPDIR=/dev/shm "$ex/bench_altan"
    run "floor-$rep" floor --model-url "http://127.0.0.1:$model_port/v1" \
        --gateway "http://127.0.0.1:$gw_port" --connect "$connect" \
        --prompt "$out/prompt.txt" --tools "$out/tools.json"
    serve disk "$disk_db"
    run "disk-$rep" openai --serve "$serve_url"
    run "disk-$rep" raw --serve "$serve_url"
    stop_serve
    serve shm "$shm_db"
    run "shm-$rep" openai --serve "$serve_url"
    run "shm-$rep" raw --serve "$serve_url"
    stop_serve
done
rm -f "$shm_db" "$shm_db-wal" "$shm_db-shm"

# Where the time goes: the same conversations with the spans exported.
serve otel "$disk_db" OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$spans_port" OTEL_BSP_SCHEDULE_DELAY=200
run "otel" openai --serve "$serve_url"
stop_serve
curl -sf "http://127.0.0.1:$spans_port/report" > "$out/stages.json"

python3 - "$out/results.jsonl" "$out/stages.json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(pred):
    v = [r["median_ms"] for r in rows if pred(r)]
    return statistics.median(v), min(v), max(v)
floor = med(lambda r: r["mode"] == "floor")
print(f"floor (bare Python, six requests): {floor[0]:.2f} ({floor[1]:.2f}-{floor[2]:.2f}) ms")
for store in ["disk", "shm"]:
    for mode in ["openai", "raw"]:
        m = med(lambda r: r["mode"] == mode and r["tag"].startswith(store + "-"))
        print(f"serve, db on {store}, {mode} client: {m[0]:.2f} ({m[1]:.2f}-{m[2]:.2f}) ms, above the floor {m[0]-floor[0]:.2f} ms")
rf = med(lambda r: r["mode"] == "rust_floor")
print(f"in process: reqwest floor {rf[0]:.2f} ({rf[1]:.2f}-{rf[2]:.2f}) ms")
for mode, store in [("inproc_memory", "disk"), ("inproc_sqlite", "disk"), ("inproc_sqlite", "shm")]:
    m = med(lambda r: r["mode"] == mode and r["tag"].startswith(store + "-"))
    print(f"in process, {mode} ({store}): {m[0]:.2f} ({m[1]:.2f}-{m[2]:.2f}) ms, above its floor {m[0]-rf[0]:.2f} ms")
print("stages (median ms over", json.load(open(sys.argv[2]))["conversations"], "conversations):")
for k, v in json.load(open(sys.argv[2]))["median_ms"].items():
    print(f"  {k}: {v:.3f}")
PY
