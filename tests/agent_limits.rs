//! Deadlines, cancellation, usage and events of a turn, with models that misbehave in time.

use std::sync::Arc;
use std::time::Duration;

use altan_pay::agent::{Agent, AgentEvent, AnswerEnd, TurnOptions};
use altan_pay::engine::{Limits, StopReason};
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
use altan_pay::model::{ChatModel, ChatRequest, ChatResponse, ModelDelta, ModelError, ModelFuture};
use altan_pay::pay::{PayClient, PayConfig, RouteTable};
use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

/// A model that never answers in time.
struct Sleepy;

impl ChatModel for Sleepy {
    fn name(&self) -> &str {
        "sleepy"
    }
    fn complete<'a>(
        &'a self,
        _request: &'a ChatRequest,
        _deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Err(ModelError::Config("woke up".into()))
        })
    }
}

async fn agent(
    model: Arc<dyn ChatModel>,
    limits: Limits,
) -> (Agent, altan_pay::gateway::GatewayHandle) {
    let routes = RouteTable::embedded();
    let gateway = spawn(routes.clone(), Arc::new(Sandbox::in_memory()), None)
        .await
        .unwrap();
    let pay = PayClient::new(PayConfig::new(routes.with_base_url(&gateway.base_url))).unwrap();
    (
        Agent::builder()
            .model(model)
            .pay(pay)
            .limits(limits)
            .build()
            .unwrap(),
        gateway,
    )
}

fn said(text: &str) -> Vec<RoomMessage> {
    vec![RoomMessage {
        member_id: "u".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: text.into(),
    }]
}

fn ctx() -> AgentContext {
    AgentContext {
        account_id: Some("ws_1".into()),
        ..AgentContext::default()
    }
}

// Paused time: the model's 30 s and the 200 ms deadline pass without waiting for them.
#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_turn_with_an_answer() {
    let limits = Limits {
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let (agent, _g) = agent(Arc::new(Sleepy), limits).await;
    let answer = agent.respond("t", &ctx(), &said("hi")).await.unwrap();
    assert_eq!(answer.end, AnswerEnd::Stopped(StopReason::Deadline));
    assert!(answer.text.contains("ran out of time"), "{}", answer.text);
    assert_eq!(answer.text.matches('@').count(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancellation_ends_the_turn_and_keeps_the_thread_usable() {
    let (agent, _g) = agent(Arc::new(Sleepy), Limits::default()).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let options = TurnOptions {
        events: None,
        cancel: Some(cancel),
    };
    let answer = agent
        .respond_with("t", &ctx(), &said("hi"), options)
        .await
        .unwrap();
    assert!(answer.text.contains("cancelled"), "{}", answer.text);
    // The session was saved; the thread answers again.
    let session = agent.store().load("t").await.unwrap().unwrap();
    assert_eq!(session.answers, 1);
}

#[tokio::test]
async fn usage_is_counted_per_model_call_and_events_arrive_in_order() {
    let model = Arc::new(ScriptedModel::new(vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))])
            .with_text("Creating it now.")
            .with_usage(100, 10),
        ScriptedStep::text("Created Pro.").with_usage(150, 5),
    ]));
    let (agent, _g) = agent(model, Limits::default()).await;
    let (tx, mut rx) = unbounded_channel();
    let options = TurnOptions {
        events: Some(tx),
        cancel: None,
    };
    let answer = agent
        .respond_with("t", &ctx(), &said("Create Pro"), options)
        .await
        .unwrap();
    assert_eq!(answer.usage.len(), 2);
    assert_eq!(answer.usage[0].prompt_tokens, 100);
    assert_eq!(answer.total_usage().total_tokens, 265);

    let mut kinds = Vec::new();
    while let Ok(event) = rx.try_recv() {
        kinds.push(match event {
            AgentEvent::Started { .. } => "started",
            AgentEvent::TextDelta { .. } => "text",
            AgentEvent::ToolCallStarted { .. } => "tool_started",
            AgentEvent::ToolCallFinished { .. } => "tool_finished",
            AgentEvent::Completed { .. } => "completed",
        });
    }
    kinds.dedup();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"completed"));
    let started = kinds.iter().position(|k| *k == "tool_started").unwrap();
    let finished = kinds.iter().position(|k| *k == "tool_finished").unwrap();
    assert!(started < finished);
    // The text the model wrote before its tool call streams out before the tool events.
    let text = kinds.iter().position(|k| *k == "text").unwrap();
    assert!(text < started, "{kinds:?}");
}

/// An answer the model's output limit cut inside a code block, after a Stripe write: the
/// answer says it was cut, the block is closed before the runtime's lines, the sync plan is
/// there, and the one mention of Altan ends the answer outside any code block.
#[tokio::test]
async fn an_answer_cut_at_the_output_limit_says_so_and_keeps_the_mention_outside_code() {
    let script = ScriptedModel::new(vec![
        ScriptedStep::tool_calls([("c1", "create_product", json!({"name": "Pro"}))]),
        ScriptedStep::text("Created Pro. Here is its JSON:\n```json\n{\"id\": \"prod_")
            .with_finish_reason(Some(altan_pay::model::FinishReason::Length)),
    ]);
    let (agent, _g) = agent(Arc::new(script), Limits::default()).await;
    let answer = agent
        .respond("t-cut", &ctx(), &said("Create a product Pro"))
        .await
        .unwrap();
    let text = &answer.text;
    assert_eq!(answer.end, AnswerEnd::Cut, "{text}");
    assert!(text.contains(altan_pay::sync::CUT_NOTE), "{text}");
    assert!(answer.sync_plan.is_some(), "{text}");
    // Every fence is closed before the note, and the mention is on the last line, outside.
    let before_note = &text[..text.find(altan_pay::sync::CUT_NOTE).unwrap()];
    let fences = |s: &str| {
        s.lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count()
    };
    assert_eq!(fences(before_note) % 2, 0, "a block is still open: {text}");
    assert_eq!(fences(text) % 2, 0, "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(last.contains("@Altan"), "{text}");
    assert_eq!(text.matches("@Altan").count(), 1, "{text}");
}

/// A call of a tool the request did not offer (not a starter tool, never opened) runs under
/// the same policy as any other: the opened set only saves tokens, it is not a permission.
/// Here the model lists products straight away; a made-up id in the same step is still refused.
#[tokio::test]
async fn a_tool_the_request_did_not_offer_runs_under_the_same_policy() {
    let script = ScriptedModel::new(vec![
        ScriptedStep::tool_calls([
            ("c1", "get_products", json!({})),
            ("c2", "delete_product", json!({"id": "prod_madeup"})),
        ]),
        ScriptedStep::text("Listed."),
    ]);
    let model = Arc::new(script);
    let (agent, _g) = agent(model.clone(), Limits::default()).await;
    let answer = agent
        .respond("t-not-offered", &ctx(), &said("What do we have?"))
        .await
        .unwrap();
    let offered: Vec<String> = model.requests()[0]
        .tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        !offered
            .iter()
            .any(|n| n == "get_products" || n == "delete_product"),
        "{offered:?}"
    );
    let list = &answer.tool_calls[0];
    assert_eq!(list.name, "get_products");
    assert_eq!(list.error, None, "{:?}", list.result);
    assert_eq!(list.result["object"], "list", "{:?}", list.result);
    let delete = &answer.tool_calls[1];
    assert!(delete.error.is_some(), "{:?}", delete.result);
    assert!(
        delete.result.to_string().contains("prod_madeup"),
        "{:?}",
        delete.result
    );
}
