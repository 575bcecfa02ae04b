#!/usr/bin/env bash
# The replica benchmark (BENCHMARKS.md, "Replicas"): turns/s and p50/p99 latency of
# `altan-pay serve` at 16 and 256 concurrent clients, for SQLite (one process) and for
# PostgreSQL with 1 and 3 replicas on one database. Every turn is the scripted create-a-product-
# with-two-prices conversation (3 model calls, 3 Stripe writes, a sync plan) on a thread of its
# own, against one `altan-pay gateway` process (embedded sandbox) and the scripted model server;
# clients go round robin over the replicas. PostgreSQL runs with fsync on (scripts/with-postgres.sh,
# PG_FSYNC=on), as SQLite runs with synchronous=FULL, both on this machine's disk.
#
#   bash bench/replicas/run.sh        # a few minutes once built; rewrites the "Replicas" section
#
# TURNS_16 and TURNS_256 (default 400 and 1024) set the measured turns per run. Everything
# listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
if [ -z "${ALTAN_PAY_TEST_DATABASE_URL:-}" ]; then
    PG_FSYNC=on exec bash scripts/with-postgres.sh bash "$0" "$@"
fi
out="$repo/.ci-cache/bench-out/replicas"
rm -rf "$out" && mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$repo/target}"
turns_16="${TURNS_16:-400}"
turns_256="${TURNS_256:-1024}"

cargo build --release --quiet --bin altan-pay --example bench_replicas --example scripted_openai
bin="$target/release/altan-pay"
ex="$target/release/examples"
psql="$(ls /usr/lib/postgresql/*/bin/psql | head -1)"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -sf "$1" > /dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; exit 1; }

model_port="$(free_port)"; gw_port="$(free_port)"
"$ex/scripted_openai" --addr "127.0.0.1:$model_port" 2> "$out/model.log" & pids+=($!)
"$bin" gateway --addr "127.0.0.1:$gw_port" 2> "$out/gateway.log" & pids+=($!)
wait_http "http://127.0.0.1:$model_port/calls"
wait_http "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id"
connect="$(curl -sf "http://127.0.0.1:$gw_port/v2/connect/account/ws_bench/stripe_connect_id" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["stripe_connect_id"])')"

serve_pids=()
# serve_up NAME N [serve flags...]: N replicas, their base URLs in $bases.
serve_up() {
    local name="$1" n="$2"; shift 2
    bases=(); serve_pids=()
    for i in $(seq "$n"); do
        local port; port="$(free_port)"
        mkdir -p "$out/$name/$i"
        (cd "$out/$name/$i" && exec env -u OPENAI_API_KEY -u ALTAN_PAY_SERVER_TOKENS \
            OPENAI_BASE_URL="http://127.0.0.1:$model_port/v1" "$bin" serve --addr "127.0.0.1:$port" --pay-base-url "http://127.0.0.1:$gw_port" \
            --thread-wait-secs 120 "$@" 2> "$out/$name/$i/serve.log") &
        serve_pids+=($!); pids+=($!)
        bases+=("--base" "http://127.0.0.1:$port")
        wait_http "http://127.0.0.1:$port/healthz"
    done
}
serve_down() { for p in "${serve_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

measure() {
    local name="$1"
    for clients in 16 256; do
        local turns=$turns_16
        [ "$clients" = 256 ] && turns=$turns_256
        "$ex/bench_replicas" "${bases[@]}" --clients "$clients" --turns "$turns" \
            --connect-id "$connect" --run "$name-$clients" \
            | python3 -c "import json,sys; r=json.load(sys.stdin); r['config']='$name'; print(json.dumps(r))" \
            >> "$out/results.jsonl"
        tail -1 "$out/results.jsonl"
    done
}

echo "== SQLite, one process"
serve_up sqlite 1 --db "$out/sqlite/serve.db" --events-db "$out/sqlite/events.db"
measure sqlite
serve_down

pg_flags=(--database-pool-size 16 --database-lease-connections 64)
for n in 1 3; do
    echo "== PostgreSQL, $n replica(s)"
    db="bench_replicas_$n"
    "$psql" "$ALTAN_PAY_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    url="${ALTAN_PAY_TEST_DATABASE_URL%/*}/$db"
    serve_up "pg$n" "$n" --database-url "$url" "${pg_flags[@]}"
    measure "pg$n"
    serve_down
done

pg_version="$("$psql" "$ALTAN_PAY_TEST_DATABASE_URL" -Atc 'SHOW server_version')"
python3 - "$out/results.jsonl" BENCHMARKS.md "$pg_version" "$turns_16" "$turns_256" <<'PY'
import json, re, subprocess, sys, datetime
results, target, pg_version, t16, t256 = sys.argv[1:6]
rows = [json.loads(l) for l in open(results)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
label = {"sqlite": "SQLite, one process", "pg1": "PostgreSQL, 1 replica", "pg3": "PostgreSQL, 3 replicas"}
L = ["## Replicas", "",
     "`altan-pay serve` on SQLite (one process) and on one PostgreSQL with 1 and 3 replicas. Each",
     "turn is the scripted create-a-product-with-two-prices conversation (3 model calls to",
     "`bench/scripted_openai`, 3 Stripe writes to one `altan-pay gateway` process with the embedded",
     "sandbox, a sync plan) on a thread of its own; the clients (`bench/replicas/main.rs`) go round",
     "robin over the replicas. Durable both ways: SQLite WAL with `synchronous=FULL`, PostgreSQL",
     f"{pg_version} with fsync on and `synchronous_commit=on`, on the same disk. Pools per replica:",
     "16 data connections, 64 lease connections.",
     "",
     f"- Command: `bash bench/replicas/run.sh` ({t16} measured turns at 16 clients, {t256} at 256,",
     "  after 32 warm-up turns; release build).",
     f"- Machine: {cores} cores ({cpu}), shared with other work while measured; "
     f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.",
     "- Every process (clients, replicas, gateway, model, PostgreSQL) shares those cores, so more",
     "  replicas add no CPU here: the 3-replica rows show the cost of the shared database and the",
     "  leases, not the scaling one gets with a machine per replica.",
     "",
     "| configuration | clients | turns | turns/s | p50 ms | p99 ms | failures |",
     "|---|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    L.append(f"| {label.get(r['config'], r['config'])} | {r['clients']} | {r['turns']} | "
             f"{r['turns_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['failures']} |")
section = "\n".join(L) + "\n"
old = open(target).read()
pattern = re.compile(r"^## Replicas\b.*?(?=^## |\Z)", re.S | re.M)
if pattern.search(old):
    new = pattern.sub(lambda _: section + "\n", old, count=1)
else:
    new = old.rstrip() + "\n\n" + section
open(target, "w").write(new)
print(section)
PY
