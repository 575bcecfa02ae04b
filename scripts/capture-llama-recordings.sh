#!/usr/bin/env bash
# Captures the llama-server responses that tests/llama_replay.rs replays, into tests/data/llama/
# (see the README there). Needs scripts/install-llama.sh's install and a built altan-pay (for
# the tool definitions exactly as altan-pay sends them). Not part of the test run: run it
# again only to refresh the recordings, and say so in the README.
#
#   bash scripts/capture-llama-recordings.sh [path/to/altan-pay]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$repo/target/debug/altan-pay}"
out="$repo/tests/data/llama"
cache="${ALTAN_PAY_CACHE:-$HOME/.cache/altan-pay}"
# shellcheck disable=SC1091
[ -n "${ALTAN_PAY_LLAMA_SERVER:-}" ] || source "$cache/llama/11434.0.0/env"
[ -x "$bin" ] || { echo "capture: $bin is not built (cargo build)" >&2; exit 1; }
mkdir -p "$out"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log="$(mktemp)"
server_cmd=("$ALTAN_PAY_LLAMA_SERVER" --model "$ALTAN_PAY_LLAMA_MODEL" --jinja
    --chat-template-file "$ALTAN_PAY_LLAMA_TEMPLATE" --host 127.0.0.1 --port "$port"
    --ctx-size 8192 --parallel 1 --threads 1 --temp 0 --seed 7)
"${server_cmd[@]}" >"$log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; rm -f "$log"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1200); do
    curl -sf "$base/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "capture: llama-server exited" >&2; exit 1; }
    sleep 0.1
done
curl -sf "$base/health" >/dev/null || { tail -n 40 "$log" >&2; echo "capture: llama-server not ready" >&2; exit 1; }

# Two tools of the demo's task, as altan-pay sends them.
tools=$("$bin" tools --json | jq -c '[.[] | select(.function.name == "create_product" or .function.name == "get_products")]')
[ "$(jq length <<<"$tools")" = 2 ] || { echo "capture: create_product/get_products not in altan-pay tools --json" >&2; exit 1; }

system="You are Altan Pay."
user="Create a product called Pro."
# The 135M model never writes the template's <tool_call> tags by itself, `tool_choice:
# "required"` does not constrain this build's output, and a custom grammar next to tools is
# refused (400 "Cannot use custom grammar constraints with tools."). So the assistant turn is
# prefilled up to the second call's arguments: the model writes the rest, and the server
# parses the whole turn (prefill and continuation) into text and tool calls, as it would its
# own. The response bytes are the server's.
prefill=$(printf 'Creating the product Pro now.\n<tool_call>\n{"name": "create_product", "arguments": {"name": "Pro"}}\n</tool_call>\n<tool_call>\n{"name": "get_products", "arguments": {"limit": 10')

post() { # name body -> tests/data/llama/<name>, the request beside it
    local name="$1" body="$2"
    jq --sort-keys . <<<"$body" >"$out/${name%.*}.request.json"
    curl -sS --fail-with-body -H 'Content-Type: application/json' -d "$body" \
        "$base/v1/chat/completions" -o "$out/$name"
    echo "captured $out/$name ($(wc -c <"$out/$name") bytes)"
}

calls_body=$(jq -n --arg system "$system" --arg user "$user" --arg prefill "$prefill" \
    --argjson tools "$tools" '{
    model: "smollm2-135m-instruct",
    messages: [{role: "system", content: $system}, {role: "user", content: $user},
               {role: "assistant", content: $prefill}],
    tools: $tools, max_completion_tokens: 24, stream: false}')
post tool-calls.json "$calls_body"
post tool-calls-stream.sse "$(jq '.stream = true | .stream_options = {include_usage: true}' <<<"$calls_body")"
jq -e '.choices[0].message.tool_calls | length >= 1' "$out/tool-calls.json" >/dev/null \
    || { echo "capture: the server returned no tool call" >&2; exit 1; }

# The answer after the calls ran: the recorded calls and a result for each.
answer_body=$(jq -n --arg system "$system" --arg user "$user" --argjson tools "$tools" \
    --slurpfile r "$out/tool-calls.json" '{
    model: "smollm2-135m-instruct",
    messages: ([{role: "system", content: $system}, {role: "user", content: $user},
        ($r[0].choices[0].message | {role, content, tool_calls})]
        + [$r[0].choices[0].message.tool_calls[] | {role: "tool", tool_call_id: .id,
            content: "{\"id\":\"prod_1\",\"object\":\"product\",\"name\":\"Pro\"}"}]),
    tools: $tools, max_completion_tokens: 160, stream: false}')
post answer.json "$answer_body"
post answer-stream.sse "$(jq '.stream = true | .stream_options = {include_usage: true}' <<<"$answer_body")"

"$ALTAN_PAY_LLAMA_SERVER" --version 2>&1 | sed 's/^/  /'
echo "server command: ${server_cmd[*]}" | sed "s#$HOME#~#g"
