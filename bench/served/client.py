"""Clients of the served-path benchmark (bench/served/run.sh); one JSON line of results.

  openai  the official openai Python client, one `chat.completions.create` per conversation
          against `altan-pay serve` (which makes the 3 model calls and 3 Pay calls itself)
  raw     the same request to `altan-pay serve` with the standard library's http.client
          (keep-alive): the serve path without the openai client's own cost
  floor   the six requests of the conversation made by the client itself with http.client
          (keep-alive): 3 model calls to the scripted model server, 3 Pay calls to a gateway,
          the same prompt and tool definitions altan-pay sends
"""

import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse

TEXT = "Create a product Pro with a monthly price of $20 and a yearly price of $200"


class Conn:
    """One keep-alive connection to a base URL."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.prefix = u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(u.hostname, u.port)

    def post(self, path, body, headers=None):
        data = json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self.conn.request("POST", self.prefix + path, body=data, headers=h)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status != 200:
            raise SystemExit(f"{path}: HTTP {r.status}: {payload[:300]!r}")
        return json.loads(payload)


def floor_conversation(model, pay, args, prompt, tools, i):
    messages = [{"role": "system", "content": prompt}, {"role": "user", "content": TEXT}]
    for _ in range(3):
        reply = model.post("/chat/completions", {"model": "scripted", "messages": messages, "tools": tools})
        message = reply["choices"][0]["message"]
        messages.append(message)
        calls = message.get("tool_calls") or []
        if not calls:
            return
        for call in calls:
            name = call["function"]["name"]
            resource = {"create_product": "products", "create_price": "prices"}[name]
            path = f"/v2/connect/{resource}/{args.account}/{name}?stripe_connect_id={args.connect}"
            result = pay.post(path, {"payload": json.loads(call["function"]["arguments"])},
                              {"Idempotency-Key": f"bench-{i}-{call['id']}"})
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["openai", "raw", "floor"])
    p.add_argument("--serve", help="altan-pay serve base URL")
    p.add_argument("--model-url", help="scripted model base URL (.../v1)")
    p.add_argument("--gateway", help="Altan Pay gateway base URL")
    p.add_argument("--account", default="ws_bench")
    p.add_argument("--connect", default="")
    p.add_argument("--prompt")
    p.add_argument("--tools")
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--tag", default="")
    args = p.parse_args()

    headers = {"X-Altan-Account-Id": args.account}
    if args.mode == "openai":
        from openai import OpenAI
        client = OpenAI(base_url=args.serve + "/v1", api_key="unused", max_retries=0,
                        default_headers=headers)

        def one(i):
            r = client.chat.completions.create(
                model="altan-pay", user=f"bench-{args.mode}-{args.tag}-{i}",
                messages=[{"role": "user", "content": TEXT}])
            assert r.model_extra["altan_pay"]["sync_plan"], r
    elif args.mode == "raw":
        serve = Conn(args.serve)

        def one(i):
            r = serve.post("/v1/chat/completions", {"model": "altan-pay", "user": f"bench-{args.mode}-{args.tag}-{i}",
                           "messages": [{"role": "user", "content": TEXT}]}, headers)
            assert r["altan_pay"]["sync_plan"], r
    else:
        prompt = open(args.prompt).read()
        tools = json.load(open(args.tools))
        model, pay = Conn(args.model_url), Conn(args.gateway)

        def one(i):
            floor_conversation(model, pay, args, prompt, tools, f"{args.tag}-{i}")

    for i in range(args.warmup):
        one(f"w{i}")
    times = []
    for i in range(args.rounds):
        t = time.perf_counter()
        one(i)
        times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"mode": args.mode, "tag": args.tag, "rounds": args.rounds,
                      "median_ms": statistics.median(times), "min_ms": min(times),
                      "max_ms": max(times)}))


if __name__ == "__main__":
    sys.exit(main())
