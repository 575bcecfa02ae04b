"""An OpenAI Agents SDK agent driving altan-pay's `/mcp` (tests/mcp_clients.rs).

The model is scripted (no network): it creates a product, then two prices for the product id
it reads in the tool output, then says it is done. The MCP server is the SDK's own
`MCPServerStreamableHttp`; every call carries one conversation handle in its request `_meta`,
so the product id the first call returned is one the server has seen.

Usage: agent.py URL TOKEN ACCOUNT
Prints one JSON object: the tool calls made and what each returned.
"""

import asyncio
import json
import sys
import uuid

from agents import Agent, ModelSettings, Runner, set_tracing_disabled
from agents.items import ModelResponse
from agents.mcp import MCPServerStreamableHttp
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

CONVERSATION = "ai.altan.pay/conversation"


def decode(value):
    """A tool output down to Stripe's object: JSON text, or MCP text content holding it."""
    for _ in range(4):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return value
        elif isinstance(value, list) and len(value) == 1:
            value = value[0]
        elif isinstance(value, dict) and value.get("type") in ("text", "input_text"):
            value = value.get("text")
        else:
            return value
    return value


def tool_outputs(items):
    """The outputs of the function calls so far, oldest first, decoded."""
    return [
        decode(item.get("output"))
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]


class ScriptedModel(Model):
    """Creates a product, then two prices for it, then answers."""

    def __init__(self):
        self.turn = 0

    def call(self, tools, name, arguments):
        # A strict model sends every property; the ones it has nothing for are null.
        schema = next(t.params_json_schema for t in tools if t.name == name)
        arguments = {key: arguments.get(key) for key in schema.get("required", [])} | arguments
        self.turn += 1
        return ModelResponse(
            output=[
                ResponseFunctionToolCall(
                    type="function_call",
                    id=f"fc_{self.turn}",
                    call_id=f"call_{self.turn}",
                    name=name,
                    arguments=json.dumps(arguments),
                    status="completed",
                )
            ],
            usage=Usage(),
            response_id=None,
        )

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema,
                           handoffs, tracing, **kwargs):
        names = {t.name for t in tools}
        assert {"create_product", "create_price"} <= names, names
        outputs = tool_outputs(input)
        if not outputs:
            return self.call(tools, "create_product", {"name": "Agent plan"})
        if not isinstance(outputs[0], dict) or "id" not in outputs[0]:
            raise RuntimeError(f"create_product's output has no id: {outputs[0]!r}")
        product = outputs[0]["id"]
        if len(outputs) < 3:
            amount = 1000 if len(outputs) == 1 else 9000
            return self.call(tools, "create_price", {"product": product, "unit_amount": amount, "currency": "usd"})
        text = ResponseOutputText(type="output_text", text=f"Created {product} with two prices.", annotations=[])
        message = ResponseOutputMessage(
            type="message", id="msg_done", role="assistant", status="completed", content=[text]
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError("the scripted model does not stream")


async def main(url, token, account):
    set_tracing_disabled(True)
    handle = f"conv_{uuid.uuid4().hex}"
    server = MCPServerStreamableHttp(
        {"url": url, "headers": {"Authorization": f"Bearer {token}", "X-Altan-Account-Id": account}},
        name="altan-pay",
        use_structured_content=False,
        tool_meta_resolver=lambda context: {CONVERSATION: handle},
        failure_error_function=None,
    )
    async with server:
        agent = Agent(
            name="Altan Pay user",
            instructions="Create the product and its prices.",
            model=ScriptedModel(),
            model_settings=ModelSettings(),
            mcp_servers=[server],
        )
        result = await Runner.run(agent, "Create Agent plan at $10 and $90.", max_turns=6)
    calls = []
    for item in result.new_items:
        raw = getattr(item, "raw_item", None)
        if item.type == "tool_call_item":
            calls.append({"name": raw.name, "arguments": json.loads(raw.arguments)})
        elif item.type == "tool_call_output_item":
            calls[-1]["output"] = item.output
    print(json.dumps({"calls": calls, "final": result.final_output, "handle": handle}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
