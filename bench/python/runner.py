"""The OpenAI Agents SDK (openai-agents) in the side-by-side benchmark: an Agent with two
function tools, create_product and create_price (the same definitions altan-pay sends), that
POST to the sandbox gateway's Altan Pay routes with the {"payload": ...} envelope; the model is
OpenAIChatCompletionsModel pointed at the scripted model server. Tracing is off (it would
export to OpenAI). Prints one JSON line like the Rust runners. See bench/run.sh."""

import argparse
import asyncio
import json
import statistics
import time

try:
    import httpx
except ImportError:  # newer openai releases ship the fork under this name
    import httpx2 as httpx
from agents import Agent, FunctionTool, OpenAIChatCompletionsModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--model-url", required=True)
    p.add_argument("--gateway", required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--connect", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--tools", required=True)
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    return p.parse_args()


def pay_tool(definition, http, url):
    f = definition["function"]

    async def invoke(_ctx, arguments: str) -> str:
        args = json.loads(arguments or "{}")
        payload = {k: v for k, v in args.items() if k != "account_id" and v is not None}
        r = await http.post(url, json={"payload": payload})
        return r.text

    return FunctionTool(
        name=f["name"],
        description=f["description"],
        params_json_schema=f["parameters"],
        on_invoke_tool=invoke,
        strict_json_schema=True,
    )


async def main():
    a = parse()
    set_tracing_disabled(True)
    prompt = open(a.prompt).read()
    tools = {t["function"]["name"]: t for t in json.load(open(a.tools))}
    http = httpx.AsyncClient(timeout=30)
    url = lambda path: f"{a.gateway}/v2/connect/{path}?stripe_connect_id={a.connect}"
    client = AsyncOpenAI(base_url=a.model_url, api_key="sk-scripted", max_retries=0)
    agent = Agent(
        name="Altan Pay",
        instructions=prompt,
        model=OpenAIChatCompletionsModel(model="scripted", openai_client=client),
        tools=[
            pay_tool(tools["create_product"], http, url(f"products/{a.account}/create_product")),
            pay_tool(tools["create_price"], http, url(f"prices/{a.account}/create_price")),
        ],
    )

    async def conversation():
        t = time.perf_counter()
        result = await Runner.run(
            agent, "Ada (user, member u-1): Create Pro at $20/month and $200/year", max_turns=5
        )
        if "@Altan" not in str(result.final_output):
            raise RuntimeError(f"unexpected answer: {result.final_output}")
        return (time.perf_counter() - t) * 1e3

    for _ in range(a.warmup):
        await asyncio.gather(*(conversation() for _ in range(a.conc)))
    conv_ms = []
    start = time.perf_counter()
    for _ in range(a.rounds):
        conv_ms += await asyncio.gather(*(conversation() for _ in range(a.conc)))
    wall_ms = (time.perf_counter() - start) * 1e3
    print(json.dumps({"runner": "python", "conc": a.conc, "rounds": a.rounds, "conv_ms": conv_ms, "wall_ms": wall_ms}))


if __name__ == "__main__":
    asyncio.run(main())
