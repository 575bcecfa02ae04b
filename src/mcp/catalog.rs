//! The MCP `tools/list` entries, from the typed tool declarations: the `inputSchema` exactly as
//! the model gets it when the account is known (strict, closed objects), one `outputSchema`
//! for every tool's structured result, and annotations from the declared effect.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};

use crate::tools::declare::{Action, Reach};
use crate::tools::{Opened, ToolSet};

/// The `structuredContent` key holding what the model reads of a successful call.
pub const RESULT_FIELD: &str = "result";
/// The `structuredContent` key holding a failed call's error, as the model reads it.
pub const ERROR_FIELD: &str = "error";
/// The `structuredContent` key holding the sync plan (the chat path's JSON, signed when the
/// server signs plans), `null` when nothing is to be synced.
pub const PLAN_FIELD: &str = "sync_plan";
/// The `structuredContent` key holding the conversation handle the call ran in.
pub const CONVERSATION_FIELD: &str = "conversation";

/// The schema every tool's `structuredContent` follows.
pub fn output_schema() -> JsonObject {
    let schema = json!({
        "type": "object",
        "properties": {
            RESULT_FIELD: {
                "description": "What the tool returned (Stripe's object or list, as the model reads it)."
            },
            ERROR_FIELD: {
                "type": "object",
                "description": "Why the call failed, as the model reads it."
            },
            PLAN_FIELD: {
                "type": ["object", "null"],
                "description": "The Stripe changes to write to the database: the same sync plan (and signature) the chat path hands to Altan."
            },
            CONVERSATION_FIELD: {
                "type": "string",
                "description": "The conversation handle; send it back in the request _meta to keep using the ids this conversation has seen."
            }
        },
        "required": [CONVERSATION_FIELD, PLAN_FIELD]
    });
    match schema {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Every tool of `tools` but those that only shape a model's view (`open_tools`), in the set's
/// fixed order, as MCP lists them.
pub fn list(tools: &ToolSet) -> Vec<Tool> {
    let output = Arc::new(output_schema());
    tools
        .entries(Opened::all(), true, false)
        .into_iter()
        .filter_map(|entry| {
            let function = entry.get("function")?;
            let name = function.get("name")?.as_str()?;
            let tool = tools.get(name)?;
            let declaration = tool.declaration();
            if declaration.reach == Reach::Session {
                return None;
            }
            let mut input = match function.get("parameters")? {
                Value::Object(map) => map.clone(),
                _ => return None,
            };
            // Strict mode's flag belongs to the OpenAI wire, not to the schema.
            input.remove("strict");
            let writes = declaration.action != Action::Read;
            let mut annotations = json!({
                "readOnlyHint": !writes,
                "openWorldHint": declaration.reach == Reach::Stripe,
            });
            if writes {
                annotations["destructiveHint"] = json!(!declaration.destroys.is_empty());
                // Stripe writes carry an idempotency key made from the conversation and the
                // call, so the same call retried applies once.
                annotations["idempotentHint"] = json!(declaration.reach == Reach::Stripe);
            }
            let value = json!({
                "name": name,
                "description": function.get("description").cloned().unwrap_or(json!("")),
                "inputSchema": input,
                "annotations": annotations,
            });
            let tool: Tool = serde_json::from_value(value).ok()?;
            Some(tool.with_raw_output_schema(output.clone()))
        })
        .collect()
}
