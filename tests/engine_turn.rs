//! The turn state machine without any network: what it asks for next, and that the history
//! it builds stays valid for the next model call whatever the model sends.

use std::collections::HashMap;
use std::sync::Arc;

mod support;

use altan_pay::agent::ToolExposure;
use altan_pay::engine::{Limits, RefusalReason, Step, StopReason, Turn, TurnEnd};
use altan_pay::model::{ChatMessage, ChatResponse, FinishReason, ToolCall, Usage};
use altan_pay::tools::{ErrorCode, ToolError, ToolOutput, ToolSet, ToolSuccess};
use serde_json::json;
use support::assert_history_valid;

fn tools() -> Vec<serde_json::Value> {
    vec![json!({"type": "function", "function": {"name": "get_products"}})]
}

/// A turn shown tools as the agent shows them (its [`ToolExposure`]).
fn turn(limits: Limits) -> Turn {
    Turn::new(
        vec![ChatMessage::system("sys"), ChatMessage::user("hi")],
        tools(),
        limits,
    )
    .with_history(Arc::new(ToolExposure::new(
        ToolSet::altan_pay(),
        false,
        false,
    )))
}

fn answer(text: &str) -> ChatResponse {
    ChatResponse {
        message: ChatMessage::assistant(text),
        finish_reason: Some(FinishReason::Stop),
        usage: Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            total_tokens: 12,
            ..Usage::default()
        },
    }
}

fn calls(list: &[(&str, &str, &str)]) -> ChatResponse {
    let mut message = ChatMessage::assistant("");
    message.content = None;
    message.tool_calls = list
        .iter()
        .map(|(id, name, args)| ToolCall {
            id: id.to_string(),
            name: name.to_string(),
            arguments: args.to_string(),
        })
        .collect();
    ChatResponse {
        message,
        finish_reason: Some(FinishReason::ToolCalls),
        usage: Usage::default(),
    }
}

fn ok(content: serde_json::Value) -> ToolOutput {
    Ok(ToolSuccess::new(content, None))
}

fn invalid(msg: &str) -> ToolOutput {
    Err(ToolError::invalid(None, msg))
}

fn expect_tools(step: Step) -> Vec<ToolCall> {
    match step {
        Step::CallTools(c) => c,
        other => panic!("expected CallTools, got {other:?}"),
    }
}

#[test]
fn a_text_answer_ends_the_turn() {
    let mut t = turn(Limits::default());
    assert!(matches!(t.start(), Step::CallModel(r) if r.tools.len() == 1 && r.messages.len() == 2));
    assert_eq!(
        t.model_response(answer("Done.")),
        Step::Done(TurnEnd::Answer("Done.".into()))
    );
    assert_eq!(t.usage().len(), 1);
    assert_eq!(t.usage()[0].total_tokens, 12);
}

#[test]
fn tool_results_go_back_in_the_models_order() {
    let mut t = turn(Limits::default());
    t.start();
    let run = expect_tools(t.model_response(calls(&[
        ("a", "get_products", "{}"),
        ("b", "get_prices", "{}"),
    ])));
    assert_eq!(
        run.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    // Results arrive in another order.
    let mut results = HashMap::new();
    results.insert("b".to_string(), ok(json!({"n": 2})));
    results.insert("a".to_string(), ok(json!({"n": 1})));
    let Step::CallModel(req) = t.tool_results(results) else {
        panic!()
    };
    let tail: Vec<_> = req.messages.iter().rev().take(2).rev().collect();
    assert_eq!(tail[0].tool_call_id.as_deref(), Some("a"));
    assert_eq!(tail[1].tool_call_id.as_deref(), Some("b"));
    assert_eq!(tail[0].content.as_deref(), Some(r#"{"n":1}"#));
    assert_history_valid(&req.messages);
}

#[test]
fn missing_and_duplicate_call_ids_are_made_unique() {
    let mut t = turn(Limits::default());
    t.start();
    let run = expect_tools(t.model_response(calls(&[
        ("", "get_products", "{}"),
        ("x", "get_products", "{\"limit\":1}"),
        ("x", "get_prices", "{}"),
    ])));
    let ids: std::collections::HashSet<_> = run.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 3, "{run:?}");
    assert!(run.iter().all(|c| !c.id.is_empty()));
    let results = run.iter().map(|c| (c.id.clone(), ok(json!({})))).collect();
    let Step::CallModel(req) = t.tool_results(results) else {
        panic!()
    };
    assert_history_valid(&req.messages);
}

#[test]
fn a_repeated_failing_call_is_not_run_again() {
    let mut t = turn(Limits::default());
    t.start();
    let run = expect_tools(t.model_response(calls(&[("a", "create_product", r#"{"name": 1}"#)])));
    assert_eq!(run.len(), 1);
    let Step::CallModel(_) = t.tool_results(HashMap::from([("a".into(), invalid("bad name"))]))
    else {
        panic!()
    };
    // Same call, arguments spelled differently.
    let run =
        expect_tools(t.model_response(calls(&[("b", "create_product", r#"{ "name" : 1 }"#)])));
    assert!(run.is_empty(), "the repeat is not handed to the driver");
    let Step::CallModel(req) = t.tool_results(HashMap::new()) else {
        panic!()
    };
    let last = req.messages.last().unwrap();
    assert!(
        last.content.as_deref().unwrap().contains("already failed"),
        "{last:?}"
    );
    assert_eq!(t.refused().len(), 1);
    assert_history_valid(&req.messages);
}

#[test]
fn a_refused_repeat_says_so_in_its_type_and_carries_the_earlier_failure() {
    let mut t = turn(Limits::default());
    t.start();
    expect_tools(t.model_response(calls(&[("a", "create_product", r#"{"name": 1}"#)])));
    t.tool_results(HashMap::from([("a".into(), invalid("bad name"))]));
    expect_tools(t.model_response(calls(&[("b", "create_product", r#"{"name":1}"#)])));
    let refused = &t.refused()[0];
    assert_eq!(refused.call.id, "b");
    let RefusalReason::RepeatsFailedCall { earlier } = &refused.reason else {
        panic!("{refused:?}")
    };
    assert_eq!(earlier.model_message, "bad name");
    assert_eq!(refused.error().code, ErrorCode::InvalidArguments);
}

#[test]
fn invalid_calls_in_a_row_stop_the_turn() {
    let mut t = turn(Limits::default());
    t.start();
    for i in 0..3 {
        let id = format!("c{i}");
        expect_tools(t.model_response(calls(&[(&id, "nope", &format!("{{\"i\":{i}}}"))])));
        let out = Err(ToolError::new(ErrorCode::UnknownTool, "no such tool"));
        let step = t.tool_results(HashMap::from([(id, out)]));
        if i < 2 {
            assert!(matches!(step, Step::CallModel(_)));
        } else {
            assert!(
                matches!(
                    step,
                    Step::Done(TurnEnd::Stopped {
                        reason: StopReason::RepeatedInvalidCalls,
                        ..
                    })
                ),
                "{step:?}"
            );
        }
    }
    assert_history_valid(t.messages());
}

#[test]
fn the_last_model_call_gets_no_tools_and_the_turn_ends() {
    let limits = Limits {
        max_model_calls: 2,
        ..Limits::default()
    };
    let mut t = turn(limits);
    t.start();
    expect_tools(t.model_response(calls(&[("a", "get_products", "{}")])));
    let Step::CallModel(req) = t.tool_results(HashMap::from([("a".into(), ok(json!({})))])) else {
        panic!()
    };
    assert!(req.tools.is_empty(), "the last call must answer in words");
    // A model that calls tools anyway is stopped, and the history stays valid.
    let step = t.model_response(calls(&[("b", "get_products", "{}")]));
    match step {
        Step::Done(TurnEnd::Stopped { reason, text }) => {
            assert_eq!(reason, StopReason::ModelCallLimit);
            assert!(text.contains("limit of model calls"));
        }
        other => panic!("{other:?}"),
    }
    assert_history_valid(t.messages());
}

#[test]
fn the_tool_call_limit_stops_before_running() {
    let limits = Limits {
        max_tool_calls: 2,
        ..Limits::default()
    };
    let mut t = turn(limits);
    t.start();
    let step = t.model_response(calls(&[
        ("a", "get_products", "{}"),
        ("b", "get_products", "{\"limit\":2}"),
        ("c", "get_products", "{\"limit\":3}"),
    ]));
    assert!(
        matches!(
            step,
            Step::Done(TurnEnd::Stopped {
                reason: StopReason::ToolCallLimit,
                ..
            })
        ),
        "{step:?}"
    );
    assert_history_valid(t.messages());
}

#[test]
fn huge_arguments_are_refused_unread() {
    let mut t = turn(Limits::default());
    t.start();
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1_000_000));
    let run = expect_tools(t.model_response(calls(&[("a", "create_product", &huge)])));
    assert!(run.is_empty());
    let Step::CallModel(req) = t.tool_results(HashMap::new()) else {
        panic!()
    };
    assert!(
        req.messages
            .last()
            .unwrap()
            .content
            .as_deref()
            .unwrap()
            .contains("at most 65536")
    );
    assert_history_valid(&req.messages);
}

#[test]
fn an_interrupted_turn_answers_the_calls_in_flight() {
    let mut t = turn(Limits::default());
    t.start();
    expect_tools(t.model_response(calls(&[
        ("a", "get_products", "{}"),
        ("b", "get_prices", "{}"),
    ])));
    let end = t.interrupt(StopReason::Deadline);
    assert!(matches!(
        end,
        TurnEnd::Stopped {
            reason: StopReason::Deadline,
            ..
        }
    ));
    assert_history_valid(t.messages());
}

#[test]
fn empty_answers_say_what_happened() {
    for (finish, expected) in [
        (Some(FinishReason::Length), "cut off"),
        (None, "empty answer"),
        (Some(FinishReason::ContentFilter), "content filter"),
    ] {
        let mut t = turn(Limits::default());
        t.start();
        let mut r = answer("  ");
        r.finish_reason = finish;
        match t.model_response(r) {
            Step::Done(TurnEnd::Answer(text)) => assert!(text.contains(expected), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}

/// A turn whose first step opened `get_products` with the call `id`.
fn opened_turn(id: &str) -> Turn {
    let mut t = turn(Limits::default());
    let _ = t.start();
    let c = expect_tools(t.model_response(calls(&[(
        id,
        "open_tools",
        r#"{"tools":["get_products"]}"#,
    )])));
    let opened = HashMap::from([(c[0].id.clone(), ok(json!({"opened": ["get_products"]})))]);
    let _ = t.tool_results(opened);
    t
}

#[test]
fn read_results_become_digests_and_the_open_tools_exchange_goes() {
    let mut t = opened_turn("o1");
    let c = expect_tools(t.model_response(calls(&[("g1", "get_products", "{}")])));
    let product = json!({"object": "list", "has_more": false, "data": [{
        "id": "prod_123456", "object": "product", "name": "Pro", "created": 1767225600,
        "description": "A long description the model has read once already."}]});
    let listed = HashMap::from([(c[0].id.clone(), ok(product))]);
    let _ = t.tool_results(listed);
    // The fresh result: no timestamp, the rest whole.
    let fresh = t.messages().last().unwrap().content.clone().unwrap();
    assert!(
        fresh.contains("A long description") && !fresh.contains("1767225600"),
        "{fresh}"
    );
    let c =
        expect_tools(t.model_response(calls(&[("g2", "get_products", r#"{"id":"prod_123456"}"#)])));
    let again = HashMap::from([(c[0].id.clone(), ok(json!({"id": "prod_123456"})))]);
    let _ = t.tool_results(again);
    let m = t.messages();
    assert_history_valid(m);
    assert!(
        !m.iter()
            .any(|m| m.tool_calls.iter().any(|c| c.name == "open_tools")
                || m.tool_call_id.as_deref() == Some("o1")),
        "the open_tools exchange is dropped once read"
    );
    let read = m
        .iter()
        .find(|m| m.tool_call_id.as_deref() == Some("g1"))
        .and_then(|m| m.content.clone())
        .unwrap();
    assert_eq!(read, r#"[{"id":"prod_123456","name":"Pro"}]"#);
}

#[test]
fn dropping_the_open_tools_exchange_keeps_a_later_call_with_the_same_id() {
    // Some servers number calls per step: the open call and a later call share `call_0`.
    let mut t = opened_turn("call_0");
    let c = expect_tools(t.model_response(calls(&[("call_0", "get_products", "{}")])));
    let _ = t.tool_results(HashMap::from([(c[0].id.clone(), ok(json!({"data": []})))]));
    let c = expect_tools(t.model_response(calls(&[("call_1", "get_products", "{}")])));
    let _ = t.tool_results(HashMap::from([(c[0].id.clone(), ok(json!({"data": []})))]));
    let m = t.messages();
    assert_history_valid(m);
    let names: Vec<&str> = m
        .iter()
        .flat_map(|m| m.tool_calls.iter().map(|c| c.name.as_str()))
        .collect();
    assert_eq!(names, ["get_products", "get_products"], "{m:?}");
    assert_eq!(m.iter().filter(|m| m.tool_call_id.is_some()).count(), 2);
}
