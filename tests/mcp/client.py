"""Drives altan-pay's MCP server with the official Python `mcp` client (tests/mcp_clients.rs).

Usage: client.py SCENARIO MODE TRANSPORT...
  SCENARIO   create | madeup | delete | scope
  MODE       legacy (2025-11-25, initialize handshake) | 2026-07-28 (stateless)
  TRANSPORT  http URL TOKEN ACCOUNT | stdio COMMAND ARG...

Prints one JSON object (what the server answered) on stdout; the Rust test asserts on it.
Any unexpected exception ends the script with a non-zero status and the traceback.
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

CONVERSATION = "ai.altan.pay/conversation"


def server_of(transport):
    kind, rest = transport[0], transport[1:]
    if kind == "http":
        url, token, account = rest
        headers = {"Authorization": f"Bearer {token}", "X-Altan-Account-Id": account}
        return streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    if kind == "stdio":
        return StdioServerParameters(command=rest[0], args=rest[1:])
    raise SystemExit(f"unknown transport {kind}")


def dump(result):
    """A tool result as plain JSON."""
    if isinstance(result, types.InputRequiredResult):
        return {"input_required": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def handle_of(result):
    return (result.meta or {}).get(CONVERSATION)


def tool_view(tool):
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


async def create(client):
    first = await client.list_tools()
    second = await client.list_tools()
    start = await client.call_tool("get_products", {})
    handle = handle_of(start)
    meta = {CONVERSATION: handle}
    product = await client.call_tool("create_product", {"name": "Pro plan"}, meta=meta)
    product_id = product.structured_content["result"]["id"]
    # The same call again, as a client does when the first answer was lost on the way.
    retried = await client.call_tool("create_product", {"name": "Pro plan"}, meta=meta)
    prices = []
    for amount in (1000, 9000):
        prices.append(
            await client.call_tool(
                "create_price",
                {"product": product_id, "unit_amount": amount, "currency": "usd"},
                meta=meta,
            )
        )
    listed = await client.call_tool("get_products", {}, meta=meta)
    return {
        "tools_first": [tool_view(t) for t in first.tools],
        "tools_second": [tool_view(t) for t in second.tools],
        "handle": handle,
        "product": dump(product),
        "retried": dump(retried),
        "prices": [dump(p) for p in prices],
        "listed": dump(listed),
    }


async def madeup(client):
    made_up = await client.call_tool(
        "create_price", {"product": "prod_MadeUp0000000001", "unit_amount": 500, "currency": "usd"}
    )
    return {"made_up": dump(made_up)}


async def delete(client, mode):
    start = await client.call_tool("get_products", {})
    meta = {CONVERSATION: handle_of(start)}
    product = await client.call_tool("create_product", {"name": "Doomed"}, meta=meta)
    product_id = product.structured_content["result"]["id"]
    out = {"product_id": product_id}
    if mode == "legacy":
        refused = await client.call_tool("delete_product", {"id": product_id}, meta=meta)
        out["refused"] = dump(refused)
    else:
        first = await client.session.call_tool(
            "delete_product", {"id": product_id}, meta=meta, allow_input_required=True
        )
        out["first"] = dump(first)
        # Nothing ran: the product is still there.
        still = await client.call_tool("get_products", {"id": product_id}, meta=meta)
        out["still_there"] = dump(still)
        confirm = {"confirm": {"action": "accept", "content": {"confirm": True}}}
        done = await client.session.call_tool(
            "delete_product",
            {"id": product_id},
            meta=meta,
            input_responses=confirm,
            request_state=first.request_state,
            allow_input_required=True,
        )
        out["confirmed"] = dump(done)
    return out


async def run(scenario, mode, transport):
    if scenario == "scope":
        try:
            async with Client(server_of(transport), mode=mode) as client:
                await client.list_tools()
        except BaseException as e:  # the transport's error, however it is wrapped
            return {"refused": True, "error": repr(e)}
        return {"refused": False}
    async with Client(server_of(transport), mode=mode) as client:
        report = {"protocol_version": client.protocol_version}
        if scenario == "create":
            report.update(await create(client))
        elif scenario == "madeup":
            report.update(await madeup(client))
        elif scenario == "delete":
            report.update(await delete(client, mode))
        else:
            raise SystemExit(f"unknown scenario {scenario}")
        return report


def main():
    scenario, mode, *transport = sys.argv[1:]
    report = asyncio.run(run(scenario, mode, transport))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
