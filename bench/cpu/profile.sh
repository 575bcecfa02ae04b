#!/usr/bin/env bash
# Where `altan-pay serve` spends its instructions on the scenario of bench/cpu/run.sh:
# callgrind (it counts instructions, so other load on the machine does not change the figures)
# over ROUNDS conversations after 3 warm-up ones, the store on tmpfs. Prints instructions per
# conversation and the functions with the most instructions (inclusive and self).
#
#   bash bench/cpu/profile.sh       # ROUNDS (default 20); output in .ci-cache/bench-out/cpu-profile/
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
out="$repo/.ci-cache/bench-out/cpu-profile"
mkdir -p "$out"
target="${CARGO_TARGET_DIR:-$repo/target}"
rounds="${ROUNDS:-20}"
bash scripts/install-test-python.sh > /dev/null
py="$repo/.ci-cache/pyenv/bin/python"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bin altan-pay --example scripted_openai
bin="$target/release/altan-pay"
ex="$target/release/examples"

WAIT_TRIES=600
. "$repo/bench/cpu/common.sh"

model_port="$(free_port)"; gw_port="$(free_port)"; port="$(free_port)"
"$ex/scripted_openai" --addr "127.0.0.1:$model_port" 2> "$out/model.log" & pids+=($!)
"$bin" gateway --addr "127.0.0.1:$gw_port" 2> "$out/gateway.log" & pids+=($!)
wait_http "http://127.0.0.1:$model_port/calls"
db="/dev/shm/altan-pay-cpu-profile-$$.db"
rm -f "$db"* "$out"/callgrind.out*
env OPENAI_BASE_URL="http://127.0.0.1:$model_port/v1" OPENAI_API_KEY=unused \
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out.%p" \
    "$bin" serve --sandbox --addr "127.0.0.1:$port" --db "$db" --events-db "$db.events" \
    2> "$out/serve.log" & serve_pid=$!; pids+=("$serve_pid")
wait_http "http://127.0.0.1:$port/healthz"
"$py" bench/served/client.py raw --serve "http://127.0.0.1:$port" --rounds 3 --warmup 0 --tag warm > /dev/null
callgrind_control -z "$serve_pid" > /dev/null
"$py" bench/served/client.py raw --serve "http://127.0.0.1:$port" --rounds "$rounds" --warmup 0 --tag p > /dev/null
callgrind_control -d "$serve_pid" > /dev/null
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
rm -f "$db"*
dump="$(ls -t "$out"/callgrind.out.*.* 2>/dev/null | head -1)"
[ -n "$dump" ] || dump="$(ls -t "$out"/callgrind.out.* | head -1)"
total="$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')"
echo "instructions per conversation: $((total / rounds)) ($rounds conversations, $dump)"
echo "== inclusive (top 40)"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n '/file:function/,$p' | head -42
echo "== self (top 40)"
callgrind_annotate "$dump" 2>/dev/null | sed -n '/file:function/,$p' | head -42
