//! `altan_pay::Agent`: the library API. It runs turns (prompt, model, policy, tools), keeps the
//! thread's session, and ends every answer with the sync plan and one handoff to Altan.
//!
//! ```no_run
//! use std::sync::Arc;
//! use altan_pay::agent::Agent;
//! use altan_pay::model::scripted::{ScriptedModel, ScriptedStep};
//! use altan_pay::pay::{PayClient, PayConfig, RouteTable};
//! use altan_pay::room::{AgentContext, MemberKind, RoomMessage};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pay = PayClient::new(PayConfig::new(RouteTable::embedded()))?;
//! let model = Arc::new(ScriptedModel::new(vec![ScriptedStep::text("Nothing to change.")]));
//! let agent = Agent::builder().model(model).pay(pay).build()?;
//! let context = AgentContext { account_id: Some("ws_1".into()), ..Default::default() };
//! let said = RoomMessage {
//!     member_id: "u1".into(),
//!     name: "Ada".into(),
//!     kind: MemberKind::User,
//!     text: "Do we have products?".into(),
//! };
//! let answer = agent.respond("thread-1", &context, &[said]).await?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```

mod answer;
mod approval;
mod builder;
mod direct;
mod exposure;
mod pending;
pub mod session;
mod tool_calls;
mod turn;
mod write_ahead;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::engine::Limits;
use crate::model::ChatModel;
use crate::policy::PolicyConfig;
use crate::room::{AgentContext, RoomMessage};
use crate::sync::SyncMapping;
use crate::tools::{ToolEnv, ToolSet};

pub use answer::{Answer, AnswerEnd, ToolCallRecord};
pub use builder::AgentBuilder;
pub use direct::{DirectCall, DirectOutcome};
pub use exposure::ToolExposure;
pub use pending::PendingSource;
pub use session::{
    MemoryStore, PendingApproval, Session, SessionStore, StoreError, StoreFuture, UncertainWrite,
};
pub use turn::{AgentEvent, TurnOptions};

/// Why a turn could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    /// The session store failed to load or save the thread.
    Store(#[from] StoreError),
    #[error("no pending approval `{0}` in this thread")]
    /// [`Agent::decide_approval`] named an approval id this thread does not hold.
    UnknownApproval(String),
    #[error("agent setup: {0}")]
    /// The agent could not be built: the text names the missing or clashing part.
    Setup(String),
}

/// The Altan Pay agent. Cheap to clone; clones share sessions and locks.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    model: Arc<dyn ChatModel>,
    env: ToolEnv,
    tools: ToolSet,
    /// Which tools each call carries and how the model reads their results.
    exposure: Arc<ToolExposure>,
    prompt: String,
    policy: PolicyConfig,
    limits: Limits,
    store: Arc<dyn SessionStore>,
    mapping: SyncMapping,
    /// Signs every sync plan the answers hand over, when set.
    plan_key: Option<crate::sync::PlanSigningKey>,
    bounce_threshold: usize,
    pending: Option<Arc<dyn PendingSource>>,
    /// One lock per thread: answers in a thread are serialised, threads run in parallel.
    threads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Agent {
    /// A builder with nothing set; [`AgentBuilder::build`] says what is still required.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// The rendered system prompt this agent sends.
    pub fn system_prompt(&self) -> &str {
        &self.inner.prompt
    }

    /// The session store this agent loads and saves threads with.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// Answers the new messages of a thread.
    pub async fn respond(
        &self,
        thread_id: &str,
        context: &AgentContext,
        new_messages: &[RoomMessage],
    ) -> Result<Answer, AgentError> {
        self.respond_with(thread_id, context, new_messages, TurnOptions::default())
            .await
    }

    /// [`Agent::respond`] with events and cancellation.
    pub async fn respond_with(
        &self,
        thread_id: &str,
        context: &AgentContext,
        new_messages: &[RoomMessage],
        options: TurnOptions,
    ) -> Result<Answer, AgentError> {
        self.answer_new_messages(thread_id, context, new_messages, options)
            .await
    }

    /// Runs (or drops) a call that was waiting for approval, then lets the model report.
    pub async fn decide_approval(
        &self,
        thread_id: &str,
        context: &AgentContext,
        approval_id: &str,
        approve: bool,
        options: TurnOptions,
    ) -> Result<Answer, AgentError> {
        self.resume_held_call(thread_id, context, approval_id, approve, options)
            .await
    }
}
