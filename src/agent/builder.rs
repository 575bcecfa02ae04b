//! [`AgentBuilder`]: what an [`Agent`] is made of, with the defaults a caller can leave out.

use std::sync::{Arc, Mutex};

use crate::engine::Limits;
use crate::model::ChatModel;
use crate::pay::PayClient;
use crate::policy::PolicyConfig;
use crate::prompt::PromptLibrary;
use crate::sync::{PlanSigningKey, SyncMapping};
use crate::tools::{AgentTool, OwnToolAdapter, Tool, ToolEnv, ToolSet};

use super::{Agent, AgentError, Inner, MemoryStore, PendingSource, SessionStore, ToolExposure};

/// Builds an [`Agent`].
#[derive(Default)]
pub struct AgentBuilder {
    model: Option<Arc<dyn ChatModel>>,
    pay: Option<PayClient>,
    prompt: Option<String>,
    policy: PolicyConfig,
    limits: Limits,
    store: Option<Arc<dyn SessionStore>>,
    mapping: Option<SyncMapping>,
    plan_key: Option<PlanSigningKey>,
    bounce_threshold: Option<usize>,
    plans: Option<crate::tools::plan::PlanStore>,
    pending: Option<Arc<dyn PendingSource>>,
    compact_tools: bool,
    all_tools: bool,
    /// The caller's own tools ([`AgentBuilder::tool`]), in the order added.
    own_tools: Vec<Arc<dyn Tool>>,
}

impl AgentBuilder {
    /// Send the compact tool definitions ([`ToolSet::to_openai_json_compact`]): no strict
    /// mode, optional properties not required. Off by default.
    pub fn compact_tools(mut self, compact: bool) -> Self {
        self.compact_tools = compact;
        self
    }

    /// Send every tool on every call instead of the starter tools, or `open_tools` and the
    /// tools the model opened with it. Off by default.
    pub fn all_tools(mut self, all: bool) -> Self {
        self.all_tools = all;
        self
    }

    /// Adds a tool of the caller's own. Its declaration ([`AgentTool::FACTS`]) is read as
    /// the catalog's are: a read runs without a sync plan; a write is recorded before it runs,
    /// gets an idempotency key ([`crate::tools::OwnCall`]), and, when it declares the table it
    /// syncs to, is in the answer's sync plan. Sent to the model as its declaration says
    /// (`.starter()` from the first call, else once the model opens it). A name the agent
    /// already has fails [`AgentBuilder::build`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use altan_pay::agent::Agent;
    /// use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
    /// use altan_pay::pay::{PayClient, PayConfig, RouteTable};
    /// use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
    /// use altan_pay::tools::{AgentTool, Facts, OwnCall, ToolError};
    /// use serde::{Deserialize, Serialize};
    /// use serde_json::json;
    ///
    /// /// Looks up a customer's loyalty tier in our CRM.
    /// #[derive(Serialize, Deserialize, schemars::JsonSchema)]
    /// struct TierArgs {
    ///     /// The customer's e-mail.
    ///     email: String,
    /// }
    ///
    /// struct LoyaltyTier;
    ///
    /// impl AgentTool for LoyaltyTier {
    ///     const NAME: &'static str = "loyalty_tier";
    ///     type Args = TierArgs;
    ///     type Output = serde_json::Value;
    ///     type Error = ToolError;
    ///     // A read: no sync plan, no idempotency key; sent from the thread's first call.
    ///     const FACTS: Facts<TierArgs> = Facts::read(&[]).starter();
    ///     async fn call(&self, args: TierArgs, _call: &OwnCall) -> Result<Self::Output, ToolError>
    /// {
    ///         Ok(json!({"email": args.email, "tier": "gold"}))
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let model = Arc::new(ScriptedModel::new(vec![
    ///     ScriptedStep::tool_calls([("c1", "loyalty_tier", json!({"email": "ada@example.com"}))]),
    ///     ScriptedStep::text("Ada is a gold customer.").expect_tool_result_containing("gold"),
    /// ]));
    /// let pay = PayClient::new(PayConfig::new(RouteTable::embedded()))?;
    /// let agent = Agent::builder().model(model).pay(pay).tool(LoyaltyTier).build()?;
    /// let context = AgentContext { account_id: Some("ws_1".into()), ..Default::default() };
    /// let said = RoomMessage {
    ///     member_id: "u1".into(),
    ///     name: "Ada".into(),
    ///     kind: MemberKind::User,
    ///     text: "What is my loyalty tier? I am ada@example.com".into(),
    /// };
    /// let answer = agent.respond("thread-1", &context, &[said]).await?;
    /// assert_eq!(answer.tool_calls[0].name, "loyalty_tier");
    /// assert_eq!(answer.tool_calls[0].result["tier"], "gold");
    /// assert!(answer.sync_plan.is_none(), "a read changes nothing to sync");
    /// assert!(answer.text.starts_with("Ada is a gold customer."));
    /// # Ok(()) }
    /// ```
    pub fn tool<T: AgentTool>(mut self, tool: T) -> Self {
        self.own_tools.push(Arc::new(OwnToolAdapter::new(tool)));
        self
    }

    /// The chat model the agent calls (required).
    pub fn model(mut self, model: Arc<dyn ChatModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// The Altan Pay API client every Stripe call goes through (required).
    pub fn pay(mut self, pay: PayClient) -> Self {
        self.pay = Some(pay);
        self
    }

    /// The rendered system prompt (default: the project's own, embedded).
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// How destructive calls are gated (default: [`PolicyConfig::default`]: they run only when a user
    /// asked for the effect in this request, with no approval step).
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }

    /// How far one turn may go: model calls, tool calls, invalid calls in a row, argument size and
    /// the deadline (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Where sessions are kept between turns (default: a [`MemoryStore`](super::MemoryStore), lost on exit).
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Which database tables and columns the sync plan writes.
    pub fn sync_mapping(mut self, mapping: SyncMapping) -> Self {
        self.mapping = Some(mapping);
        self
    }

    /// Sign every sync plan with this key (the applier's `--plan-signing-key`), so an applier
    /// holding it applies only the runtime's plans. Unsigned by default.
    pub fn plan_signing_key(mut self, key: PlanSigningKey) -> Self {
        self.plan_key = Some(key);
        self
    }

    /// Where Stripe changes made outside the agent come from (e.g. the events endpoint).
    pub fn pending_source(mut self, source: Arc<dyn PendingSource>) -> Self {
        self.pending = Some(source);
        self
    }

    /// Where the room's plans are kept (default: in memory).
    pub fn plans(mut self, plans: crate::tools::plan::PlanStore) -> Self {
        self.plans = Some(plans);
        self
    }

    /// How many agent messages in a row count as agents going back and forth (default 4).
    pub fn bounce_threshold(mut self, n: usize) -> Self {
        self.bounce_threshold = Some(n.max(2));
        self
    }

    /// The agent, or [`AgentError::Setup`] naming what is missing or clashes (no model, no Pay client,
    /// an own tool whose name is taken).
    pub fn build(self) -> Result<Agent, AgentError> {
        let model = self
            .model
            .ok_or_else(|| AgentError::Setup("a model is required".into()))?;
        let pay = self
            .pay
            .ok_or_else(|| AgentError::Setup("an Altan Pay client is required".into()))?;
        let prompt = match self.prompt {
            Some(p) => p,
            None => PromptLibrary::embedded()
                .render_default()
                .map_err(|e| AgentError::Setup(e.to_string()))?,
        };
        let tools = ToolSet::altan_pay_with(self.plans.unwrap_or_default(), self.own_tools)
            .map_err(|e| AgentError::Setup(e.to_string()))?;
        let exposure = ToolExposure::new(tools.clone(), self.compact_tools, self.all_tools);
        Ok(Agent {
            inner: Arc::new(Inner {
                model,
                env: ToolEnv { pay },
                tools,
                exposure: Arc::new(exposure),
                prompt,
                policy: self.policy,
                limits: self.limits,
                store: self
                    .store
                    .unwrap_or_else(|| Arc::new(MemoryStore::default())),
                mapping: self.mapping.unwrap_or_default(),
                plan_key: self.plan_key,
                bounce_threshold: self.bounce_threshold.unwrap_or(4),
                pending: self.pending,
                threads: Mutex::default(),
            }),
        })
    }
}
