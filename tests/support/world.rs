//! The whole agent for tests: a scripted model, the real tools and `PayClient`, and the sandbox
//! gateway over HTTP on 127.0.0.1, with injected faults in front of the sandbox and a counter of
//! the requests that reach it. A test states only what differs from the defaults:
//!
//! ```ignore
//! let w = World::builder(steps).seed(json!({"accounts": {}})).build().await;
//! let answer = w.agent.respond("t1", &context(), &[user("hi")]).await.unwrap();
//! ```

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altan_pay::agent::{Agent, Answer};
use altan_pay::gateway::faults::{FaultPlan, FaultyBackend};
use altan_pay::gateway::{Backend, GatewayHandle, PayRequest, PayResponse, Sandbox, spawn};
use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
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

/// The sandbox behind a request counter: "nothing was sent" is checked, not assumed. A request
/// counts once the sandbox has answered it.
pub struct Counting {
    pub inner: Sandbox,
    answered: Mutex<Vec<String>>,
}

impl Counting {
    pub fn new(inner: Sandbox) -> Counting {
        Counting {
            inner,
            answered: Mutex::new(Vec::new()),
        }
    }

    /// How many requests the sandbox answered.
    pub fn requests(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    /// How many requests for `operation` the sandbox answered.
    pub fn requests_for(&self, operation: &str) -> usize {
        let answered = self.answered.lock().unwrap();
        answered.iter().filter(|op| *op == operation).count()
    }
}

impl Backend for Counting {
    fn handle(
        &self,
        request: PayRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PayResponse> + Send + '_>> {
        Box::pin(async move {
            let operation = request.operation.clone();
            let response = self.inner.handle(request).await;
            self.answered.lock().unwrap().push(operation);
            response
        })
    }
}

/// An agent over the sandbox gateway; see [`World::builder`].
pub struct World {
    pub agent: Agent,
    pub model: Arc<ScriptedModel>,
    pub sandbox: Sandbox,
    pub faults: Arc<FaultyBackend>,
    pub counting: Arc<Counting>,
    pub gateway: GatewayHandle,
}

impl World {
    /// An agent whose model plays `steps`, over an empty sandbox, no faults, the default policy
    /// and the default `PayConfig`.
    pub fn builder(steps: Vec<ScriptedStep>) -> WorldBuilder {
        WorldBuilder {
            steps,
            seed: json!({"accounts": {}}),
            policy: PolicyConfig::default(),
            faults: FaultPlan::new(0),
            timeout: None,
            retry: None,
            deterministic: None,
            compact_tools: false,
        }
    }

    /// How many requests reached the sandbox (after the faults).
    pub fn requests(&self) -> usize {
        self.counting.requests()
    }
}

/// What differs from [`World::builder`]'s defaults.
pub struct WorldBuilder {
    steps: Vec<ScriptedStep>,
    seed: Value,
    policy: PolicyConfig,
    faults: FaultPlan,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    deterministic: Option<u64>,
    compact_tools: bool,
}

impl WorldBuilder {
    /// The sandbox's state, as `Sandbox::with_state` reads it.
    pub fn seed(mut self, seed: Value) -> Self {
        self.seed = seed;
        self
    }

    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// Faults injected in front of the sandbox.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = plan;
        self
    }

    /// The Pay client's timeout, with [`fast_retries`] unless [`WorldBuilder::retry`] says
    /// otherwise.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.retry = self.retry.or_else(|| Some(fast_retries()));
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Ids the sandbox makes are a function of `seed`.
    pub fn deterministic(mut self, seed: u64) -> Self {
        self.deterministic = Some(seed);
        self
    }

    /// Tool definitions sent in their compact form.
    pub fn compact_tools(mut self) -> Self {
        self.compact_tools = true;
        self
    }

    pub async fn build(self) -> World {
        let mut sandbox = Sandbox::with_state(&self.seed).unwrap();
        if let Some(seed) = self.deterministic {
            sandbox = sandbox.deterministic(seed);
        }
        let counting = Arc::new(Counting::new(sandbox.clone()));
        let faults = Arc::new(FaultyBackend::new(counting.clone(), self.faults));
        let backend: Arc<dyn Backend> = faults.clone();
        let routes = RouteTable::embedded();
        let gateway = spawn(routes.clone(), backend, None).await.unwrap();
        let mut config = PayConfig::new(routes.with_base_url(&gateway.base_url));
        if let Some(timeout) = self.timeout {
            config.timeout = timeout;
        }
        if let Some(retry) = self.retry {
            config.retry = retry;
        }
        let model = Arc::new(ScriptedModel::new(self.steps));
        let agent = Agent::builder()
            .model(model.clone())
            .pay(PayClient::new(config).unwrap())
            .policy(self.policy)
            .compact_tools(self.compact_tools)
            .build()
            .unwrap();
        World {
            agent,
            model,
            sandbox,
            faults,
            counting,
            gateway,
        }
    }
}

pub fn member(member_id: &str, name: &str, kind: MemberKind) -> RoomMember {
    RoomMember {
        member_id: member_id.into(),
        name: name.into(),
        kind,
    }
}

/// Account `ws_1` in a room of three: the user Ada (`u-1`), Altan (`altan-1`) and Altan Pay
/// itself (`pay-1`).
pub fn context() -> AgentContext {
    AgentContext {
        account_id: Some(ACCOUNT.into()),
        stripe_connect_id: None,
        agent_member_id: Some("pay-1".into()),
        agent_name: Some("Altan Pay".into()),
        members: vec![
            member("u-1", "Ada", MemberKind::User),
            member("altan-1", "Altan", MemberKind::Agent),
            member("pay-1", "Altan Pay", MemberKind::Agent),
        ],
    }
}

/// A message from Ada, the room's user.
pub fn user(text: &str) -> RoomMessage {
    RoomMessage {
        member_id: "u-1".into(),
        name: "Ada".into(),
        kind: MemberKind::User,
        text: text.into(),
    }
}

/// A message from another agent of the room.
pub fn agent_msg(name: &str, id: &str, text: &str) -> RoomMessage {
    RoomMessage {
        member_id: id.into(),
        name: name.into(),
        kind: MemberKind::Agent,
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

/// A model answer that makes these `(id, tool, arguments)` calls.
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
