//! Deadlines, cancellation, usage and events of a turn, with models that misbehave in time.

use std::sync::Arc;
use std::time::Duration;

use altan_pay::agent::{Agent, AgentEvent, AnswerEnd, TurnOptions};
use altan_pay::engine::Limits;
use altan_pay::gateway::{Sandbox, spawn};
use altan_pay::model::scripted::{ScriptedModel, Step};
use altan_pay::model::{BoxFuture, ChatModel, ChatRequest, ChatResponse, ModelDelta, ModelError};
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
    ) -> BoxFuture<'a, Result<ChatResponse, ModelError>> {
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

#[tokio::test]
async fn the_deadline_ends_the_turn_with_an_answer() {
    let limits = Limits {
        deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    let (agent, _g) = agent(Arc::new(Sleepy), limits).await;
    let answer = agent.respond("t", &ctx(), &said("hi")).await.unwrap();
    assert_eq!(answer.end, AnswerEnd::Stopped);
    assert!(answer.text.contains("ran out of time"), "{}", answer.text);
    assert_eq!(answer.text.matches('@').count(), 1);
}

#[tokio::test]
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
    let session = agent.store().load("t").unwrap().unwrap();
    assert_eq!(session.answers, 1);
}

#[tokio::test]
async fn usage_is_counted_per_model_call_and_events_arrive_in_order() {
    let model = Arc::new(ScriptedModel::new(vec![
        Step::tool_calls([("c1", "create_product", json!({"name": "Pro"}))])
            .with_text("Creating it now.")
            .with_usage(100, 10),
        Step::text("Created Pro.").with_usage(150, 5),
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
