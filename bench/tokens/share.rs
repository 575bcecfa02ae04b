//! How much of a model call a prompt cache can reuse from the thread's previous call: the
//! tokens the two share from the start, over the tokens of the call. Used by the tokens bench
//! and `tests/tokens.rs`.
//!
//! A request is laid out as a model server renders it before the conversation: the system
//! prompt, then the tool definitions, then the other messages in order (the context message,
//! the history, the new messages), each as the JSON sent.

use altan_pay::transcript::format::Transcript;
use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// The request bodies of a recorded thread's model calls, in order.
pub fn requests(t: &Transcript) -> Vec<&Value> {
    t.turns
        .iter()
        .flat_map(|turn| &turn.model_calls)
        .map(|c| &c.request)
        .collect()
}

/// The request's text in the order a server renders it (see the module docs).
pub fn layout(request: &Value) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let mut text = messages.first().map(Value::to_string).unwrap_or_default();
    text.push('\n');
    text.push_str(&request["tools"].to_string());
    for m in messages.iter().skip(1) {
        text.push('\n');
        text.push_str(&m.to_string());
    }
    text
}

/// For each request of one thread, in order: `(tokens, tokens shared with the previous
/// request from the start)`; the first shares nothing.
pub fn shared_prefixes(bpe: &CoreBPE, requests: &[&Value]) -> Vec<(usize, usize)> {
    let mut previous: Vec<u32> = Vec::new();
    let mut out = Vec::new();
    for r in requests {
        let tokens = bpe.encode_with_special_tokens(&layout(r));
        let shared = previous
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count();
        out.push((tokens.len(), shared));
        previous = tokens;
    }
    out
}

/// `shared / tokens` in percent, rounded down.
pub fn percent(tokens: usize, shared: usize) -> usize {
    (shared * 100).checked_div(tokens).unwrap_or(0)
}
