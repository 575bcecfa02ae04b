//! Tokens (o200k_base, via tiktoken-rs which bundles the BPE) of the system prompt and the tool
//! definitions, per tool, strict (default) and compact, against Stripe's agent toolkit.
//! Usage: `cargo run --release --example bench_tokens -- STRIPE_TOOLS.json` (the output of
//! `bench/tokens/stripe_toolkit_tools.js`). Prints one JSON object.

use altan_pay::prompt::PromptLibrary;
use altan_pay::tools::ToolSet;
use serde_json::{Value, json};

/// Altan Pay tool → the Stripe agent toolkit tool doing the same operation.
const MATCHING: &[(&str, &str)] = &[
    ("create_product", "create_product"),
    ("get_products", "list_products"),
    ("create_price", "create_price"),
    ("get_prices", "list_prices"),
    ("create_customer", "create_customer"),
    ("get_customers", "list_customers"),
    ("create_coupon", "create_coupon"),
    ("get_coupons", "list_coupons"),
    ("get_subscriptions", "list_subscriptions"),
    ("update_subscription", "update_subscription"),
    ("cancel_subscription", "cancel_subscription"),
];

fn main() -> Result<(), String> {
    let bpe = tiktoken_rs::o200k_base().map_err(|e| e.to_string())?;
    let count = |v: &Value| bpe.encode_with_special_tokens(&v.to_string()).len();
    let stripe_path = std::env::args()
        .nth(1)
        .ok_or("usage: bench_tokens STRIPE_TOOLS.json")?;
    let stripe: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(&stripe_path).map_err(|e| format!("{stripe_path}: {e}"))?,
    )
    .map_err(|e| e.to_string())?;
    let prompt = PromptLibrary::embedded()
        .render_default()
        .map_err(|e| e.to_string())?;
    let tools = ToolSet::altan_pay();
    let strict = tools.to_openai_json();
    let compact = tools.to_openai_json_compact(true);
    let compact_no_ctx = tools.to_openai_json_compact(false);
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let by_name = |v: &[Value], name: &str| {
        v.iter()
            .find(|t| t["function"]["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (strict, compact) = (list(&strict), list(&compact));
    let per_tool: Vec<Value> = strict
        .iter()
        .zip(&compact)
        .map(|(s, c)| json!({"tool": s["function"]["name"], "strict": count(s), "compact": count(c)}))
        .collect();
    let matching: Vec<Value> = MATCHING
        .iter()
        .map(|(ours, theirs)| {
            let st = by_name(&stripe, theirs);
            json!({
                "altan": ours, "stripe": theirs,
                "altan_strict": count(&by_name(&strict, ours)),
                "altan_compact": count(&by_name(&compact, ours)),
                "stripe_toolkit": if st.is_null() { Value::Null } else { json!(count(&st)) },
            })
        })
        .collect();
    let sum = |v: &[Value], key: &str| v.iter().filter_map(|x| x[key].as_u64()).sum::<u64>();
    let prompt_tokens = bpe.encode_with_special_tokens(&prompt).len();
    let strict_total = count(&Value::Array(strict.clone()));
    let compact_total = count(&Value::Array(compact.clone()));
    println!(
        "{}",
        json!({
            "encoding": "o200k_base",
            "prompt_tokens": prompt_tokens,
            "prompt_bytes": prompt.len(),
            "tools": strict.len(),
            "tools_strict_total": strict_total,
            "tools_compact_total": compact_total,
            "tools_compact_without_context_account_total": count(&compact_no_ctx),
            "per_call_strict": prompt_tokens + strict_total,
            "per_call_compact": prompt_tokens + compact_total,
            "stripe_toolkit_tools": stripe.len(),
            "stripe_toolkit_total": count(&Value::Array(stripe.clone())),
            "per_tool": per_tool,
            "matching": matching,
            "matching_sum": {
                "altan_strict": sum(&matching, "altan_strict"),
                "altan_compact": sum(&matching, "altan_compact"),
                "stripe_toolkit": sum(&matching, "stripe_toolkit"),
            },
        })
    );
    Ok(())
}
