//! The opt-in compact tool definitions: fewer tokens, same behaviour.

#[path = "support/world.rs"]
mod world;

use altan_pay::agent::AnswerEnd;
use altan_pay::model::scripted::ScriptedStep;
use altan_pay::room::AgentContext;
use altan_pay::tools::ToolSet;
use serde_json::{Value, json};
use world::{World, calls, last_tool_json, user};

#[test]
fn compact_definitions_keep_every_tool_and_property_but_require_only_non_nullable_ones() {
    let tools = ToolSet::altan_pay();
    let strict = tools.to_openai_json();
    let compact = tools.to_openai_json_compact(false);
    let (strict, compact) = (strict.as_array().unwrap(), compact.as_array().unwrap());
    assert_eq!(strict.len(), compact.len());
    for (s, c) in strict.iter().zip(compact) {
        let (s, c) = (&s["function"], &c["function"]);
        assert_eq!(s["name"], c["name"]);
        assert_eq!(s["description"], c["description"]);
        assert!(c.get("strict").is_none());
        let props = |f: &Value| {
            f["parameters"]["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect::<Vec<_>>())
        };
        assert_eq!(props(s), props(c), "{}", s["name"]);
        let required: Vec<&str> = c["parameters"]["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for name in required {
            let t = &c["parameters"]["properties"][name]["type"];
            assert!(
                !t.as_array().is_some_and(|t| t.contains(&json!("null"))),
                "{} requires nullable {name}",
                s["name"]
            );
        }
    }
    let known = tools.to_openai_json_compact(true);
    assert!(
        known
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["function"]["parameters"]["properties"]["account_id"].is_null())
    );
    assert!(known.to_string().len() < strict_len(&tools));
}

fn strict_len(tools: &ToolSet) -> usize {
    tools.to_openai_json().to_string().len()
}

#[tokio::test]
async fn a_compact_agent_creates_a_product_with_two_prices_and_hands_off() {
    let w = World::builder(vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::dynamic(|req| {
            let id = last_tool_json(req)?["id"]
                .as_str()
                .ok_or("no id")?
                .to_string();
            let price = |interval: &str| json!({"product": id, "unit_amount": 2000, "currency": "usd", "recurring": {"interval": interval}});
            Ok(calls(vec![
                ("p0", "create_price", price("month")),
                ("p1", "create_price", price("year")),
            ]))
        }),
        ScriptedStep::text("Created Pro with two prices."),
    ])
    .deterministic(1)
    .compact_tools()
    .build()
    .await;
    let context = AgentContext {
        account_id: Some("ws_1".into()),
        ..Default::default()
    };
    let said = [user("Create Pro at $20/month and $200/year")];
    let answer = w.agent.respond("t1", &context, &said).await.unwrap();
    assert_eq!(answer.end, AnswerEnd::Completed);
    assert_eq!(answer.tool_calls.len(), 3);
    assert!(
        answer.tool_calls.iter().all(|c| c.error.is_none()),
        "{:?}",
        answer.tool_calls
    );
    assert_eq!(answer.sync_plan.map(|p| p.operations().len()), Some(3));
    let sent = &w.model.requests()[0].tools;
    assert!(sent.iter().all(|t| t["function"].get("strict").is_none()));
    assert!(
        sent.iter()
            .all(|t| t["function"]["parameters"]["properties"]["account_id"].is_null())
    );
}
