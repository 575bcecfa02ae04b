//! Shared pieces of the reliability tests: an agent with a scripted model over a real
//! `PayClient` and the sandbox gateway, optionally behind injected faults.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use altan_pay::agent::{Agent, Answer};
use altan_pay::gateway::faults::{FaultPlan, FaultyBackend};
use altan_pay::gateway::{Backend, GatewayHandle, PayRequest, Sandbox, spawn};
use altan_pay::model::scripted::{ScriptedModel, Step};
use altan_pay::model::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, Role, ToolCall, Usage,
};
use altan_pay::pay::{PayClient, PayConfig, RetryPolicy, RouteTable};
use altan_pay::policy::PolicyConfig;
use altan_pay::room::{AgentContext, MemberKind, RoomMember, RoomMessage};
use serde_json::{Value, json};

pub const ACCOUNT: &str = "ws_1";

/// Retries as in production, only faster.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
    }
}

pub fn client(base_url: &str, timeout: Duration, retry: RetryPolicy) -> PayClient {
    let mut config = PayConfig::new(RouteTable::embedded().with_base_url(base_url));
    config.timeout = timeout;
    config.retry = retry;
    PayClient::new(config).unwrap()
}

pub struct World {
    pub agent: Agent,
    pub model: Arc<ScriptedModel>,
    pub sandbox: Sandbox,
    pub faults: Arc<FaultyBackend>,
    pub gateway: GatewayHandle,
}

/// An agent over the sandbox gateway with `plan`'s faults in front of the sandbox.
pub async fn world(steps: Vec<Step>, plan: FaultPlan, timeout: Duration) -> World {
    world_with(
        steps,
        plan,
        timeout,
        PolicyConfig::default(),
        json!({"accounts": {}}),
    )
    .await
}

pub async fn world_with(
    steps: Vec<Step>,
    plan: FaultPlan,
    timeout: Duration,
    policy: PolicyConfig,
    seed: Value,
) -> World {
    let sandbox = Sandbox::with_state(&seed).unwrap();
    let faults = Arc::new(FaultyBackend::new(Arc::new(sandbox.clone()), plan));
    let backend: Arc<dyn Backend> = faults.clone();
    let gateway = spawn(RouteTable::embedded(), backend, None).await.unwrap();
    let model = Arc::new(ScriptedModel::new(steps));
    let agent = Agent::builder()
        .model(model.clone())
        .pay(client(&gateway.base_url, timeout, fast_retries()))
        .policy(policy)
        .build()
        .unwrap();
    World {
        agent,
        model,
        sandbox,
        faults,
        gateway,
    }
}

pub fn context() -> AgentContext {
    AgentContext {
        account_id: Some(ACCOUNT.into()),
        stripe_connect_id: None,
        agent_member_id: Some("pay-1".into()),
        agent_name: Some("Altan Pay".into()),
        members: vec![
            RoomMember {
                member_id: "u-1".into(),
                name: "Ada".into(),
                kind: MemberKind::User,
            },
            RoomMember {
                member_id: "altan-1".into(),
                name: "Altan".into(),
                kind: MemberKind::Agent,
            },
            RoomMember {
                member_id: "pay-1".into(),
                name: "Altan Pay".into(),
                kind: MemberKind::Agent,
            },
        ],
    }
}

pub fn user(text: &str) -> RoomMessage {
    RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: text.into(),
    }
}

/// The JSON of the latest tool result in the request.
pub fn last_tool_json(req: &ChatRequest) -> Result<Value, String> {
    let m = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::Tool)
        .ok_or("no tool result yet")?;
    serde_json::from_str(m.content.as_deref().unwrap_or("")).map_err(|e| e.to_string())
}

/// Every tool result of the request, newest last.
pub fn tool_jsons(req: &ChatRequest) -> Vec<Value> {
    req.messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| serde_json::from_str(m.content.as_deref().unwrap_or("")).ok())
        .collect()
}

pub fn calls(list: Vec<(&str, &str, Value)>) -> ChatResponse {
    ChatResponse {
        message: ChatMessage {
            role: Role::Assistant,
            content: None,
            name: None,
            tool_calls: list
                .into_iter()
                .map(|(id, name, args)| ToolCall {
                    id: id.into(),
                    name: name.into(),
                    arguments: args.to_string(),
                })
                .collect(),
            tool_call_id: None,
            reasoning: None,
        },
        finish_reason: Some(FinishReason::ToolCalls),
        usage: Usage::default(),
    }
}

/// Every object of a list operation in the sandbox.
pub fn stripe_list(sandbox: &Sandbox, operation: &str) -> Vec<Value> {
    let response = sandbox.handle_now(&PayRequest {
        operation: operation.into(),
        account_id: ACCOUNT.into(),
        stripe_connect_id: Some(altan_pay::gateway::sandbox::derived_connect_id(ACCOUNT)),
        id: None,
        params: serde_json::Map::from_iter([("limit".to_string(), json!("100"))]),
        idempotency_key: None,
    });
    response.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `(table, id)` of every product, price, customer and coupon in the sandbox.
pub fn stripe_rows(sandbox: &Sandbox) -> BTreeSet<(String, String)> {
    let mut rows = BTreeSet::new();
    for (op, table) in [
        ("products.list", "products"),
        ("prices.list", "prices"),
        ("customers.list", "customers"),
        ("coupons.list", "coupons"),
    ] {
        for o in stripe_list(sandbox, op) {
            rows.insert((table.to_string(), o["id"].as_str().unwrap().to_string()));
        }
    }
    rows
}

/// `(table, id)` of every operation in the answer's sync plan.
pub fn plan_rows(answer: &Answer) -> BTreeSet<(String, String)> {
    answer
        .sync_plan
        .iter()
        .flat_map(|p| p.operations())
        .map(|o| (o.table.clone(), o.id.clone()))
        .collect()
}

/// The plan has no row twice.
pub fn assert_plan_unique(answer: &Answer) {
    let ops: Vec<_> = answer
        .sync_plan
        .iter()
        .flat_map(|p| p.operations())
        .map(|o| (o.table.clone(), o.id.clone()))
        .collect();
    assert_eq!(ops.len(), plan_rows(answer).len(), "a row twice: {ops:?}");
}
