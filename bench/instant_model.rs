//! A zero-latency, stateless in-process model with the scripted server's logic
//! (`bench/scripted_openai`): create_product, then two create_price calls for the product id
//! in the latest tool result, then the final text. Included with `#[path]`.

use altan_pay::model::{
    ChatMessage, ChatModel, ChatRequest, ChatResponse, FinishReason, ModelDelta, ModelError,
    ModelFuture, Role, ToolCall, Usage,
};
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

pub struct InstantModel;

fn product_id(text: &str) -> Option<String> {
    let start = text.find("prod_")?;
    let id: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (id.len() > 5).then_some(id)
}

fn calls(list: Vec<(&str, &str, String)>) -> ChatResponse {
    ChatResponse {
        message: ChatMessage {
            role: Role::Assistant,
            content: None,
            name: None,
            tool_calls: list
                .into_iter()
                .map(|(id, name, arguments)| ToolCall {
                    id: id.into(),
                    name: name.into(),
                    arguments,
                })
                .collect(),
            tool_call_id: None,
            reasoning: None,
        },
        finish_reason: Some(FinishReason::ToolCalls),
        usage: Usage::default(),
    }
}

/// The answer for a request, from the conversation state alone.
pub fn answer(request: &ChatRequest) -> Result<ChatResponse, ModelError> {
    let rounds = request
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
        .count();
    Ok(match rounds {
        0 => calls(vec![(
            "c1",
            "create_product",
            json!({"name": "Pro"}).to_string(),
        )]),
        1 => {
            let last = request
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::Tool)
                .and_then(|m| m.content.as_deref())
                .and_then(product_id)
                .ok_or_else(|| ModelError::BadResponse("no product id".into()))?;
            calls(vec![
                ("c2", "create_price", json!({"product": last, "unit_amount": 2000, "currency": "usd", "recurring": {"interval": "month"}}).to_string()),
                ("c3", "create_price", json!({"product": last, "unit_amount": 20000, "currency": "usd", "recurring": {"interval": "year"}}).to_string()),
            ])
        }
        _ => ChatResponse {
            message: ChatMessage::assistant(
                "Created Pro with a monthly ($20) and a yearly ($200) price. @Altan please add the product and its two prices to the database.",
            ),
            finish_reason: Some(FinishReason::Stop),
            usage: Usage::default(),
        },
    })
}

impl ChatModel for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        _deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async move { answer(request) })
    }
}
