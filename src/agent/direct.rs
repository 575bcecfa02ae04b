//! One tool call outside a model turn (the MCP server's `tools/call`), through the same path
//! as a call the model makes in a chat turn: the policy (ids only from Stripe results or
//! verified reads of the same conversation, targets verified first, destructive effects held),
//! the write-ahead, idempotency keys, the sync plan (signed when the agent signs plans), and the
//! session saved before the result is handed back.

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info_span};

use crate::model::ToolCall;
use crate::policy::{Hold, Requested};
use crate::room::AgentContext;
use crate::sync::{Mutation, SyncLedger, SyncPlan};
use crate::tools::{ToolOutput, ToolSet};

use super::approval::Admission;
use super::{Agent, AgentError};

/// One tool call made directly, not by the model (see [`Agent::call_tool`]).
#[derive(Debug, Clone)]
pub struct DirectCall<'a> {
    /// The conversation the call belongs to: its session holds the ids seen so far and the
    /// writes of unknown outcome, and keys the call's idempotency key.
    pub thread_id: &'a str,
    /// The trusted context: the account (and its resolved Connect id) the call acts for.
    pub context: &'a AgentContext,
    /// The tool's name.
    pub name: &'a str,
    /// The arguments as one JSON object.
    pub arguments: &'a Value,
    /// A person confirmed this very call (its destructive effect may run).
    pub confirmed: bool,
}

/// What a direct call came to.
#[derive(Debug)]
pub enum DirectOutcome {
    /// The call ran (or was refused); `sync_plan` carries every Stripe change not yet handed
    /// over in this conversation, this call's included.
    Done {
        /// What the tool returned, or the model-facing error.
        output: Box<ToolOutput>,
        /// The plan the chat path would hand over at this point, signed when the agent signs.
        sync_plan: Option<SyncPlan>,
        /// The Stripe changes in the plan, for a caller that also queues them for Altan.
        changes: Vec<Mutation>,
    },
    /// The call would destroy something and no person confirmed it: nothing ran.
    NeedsConfirmation {
        /// Why the policy holds it, with what the call would destroy.
        hold: Hold,
    },
}

impl Agent {
    /// The key this agent signs sync plans with, when it has one.
    #[cfg(feature = "mcp")]
    pub(crate) fn plan_signing_key(&self) -> Option<&crate::sync::PlanSigningKey> {
        self.inner.plan_key.as_ref()
    }

    /// The agent's tools (the MCP server lists them from their typed declarations).
    pub fn tool_set(&self) -> &ToolSet {
        &self.inner.tools
    }

    /// Runs one tool call outside a model turn, with the chat path's guarantees (see the
    /// module docs). The idempotency key comes from the conversation and the call's name and
    /// canonical arguments: the same call repeated in one conversation (a retry after a lost
    /// answer) is the same write, applied once.
    pub async fn call_tool(&self, call: DirectCall<'_>) -> Result<DirectOutcome, AgentError> {
        let span = info_span!(
            "direct_tool_call",
            gen_ai.tool.name = %call.name,
            altan_pay.conversation = %call.thread_id,
        );
        self.call_tool_in_span(call).instrument(span).await
    }

    async fn call_tool_in_span(&self, direct: DirectCall<'_>) -> Result<DirectOutcome, AgentError> {
        let lock = self.thread_lock(direct.thread_id);
        let _guard = lock.lock().await;
        let mut session = self.load(direct.thread_id).await?;
        let context = direct.context;
        let arguments = direct.arguments.to_string();
        let call = ToolCall {
            id: direct_call_id(direct.name, direct.arguments),
            name: direct.name.to_string(),
            arguments,
        };
        // Writes an earlier call left unknown (a crash, a lost answer) are confirmed with their
        // own keys first, as before each chat answer.
        if !session.uncertain.is_empty() {
            let mut confirmed = Vec::new();
            if self
                .settle_uncertain(&mut session, context, &mut confirmed)
                .await
            {
                self.inner.store.save_queued(&session);
            }
        }
        let output = match self
            .admit(&mut session, context, &call, Requested::none())
            .await
        {
            Admission::Answer(output) => {
                let output = *output;
                crate::metrics::global()
                    .tool_call(&call.name, output.as_ref().err().map(|e| e.code));
                output
            }
            Admission::Hold(hold) if !direct.confirmed => {
                // The verified reads are kept for the confirmed call.
                self.inner.store.save(&session).await?;
                return Ok(DirectOutcome::NeedsConfirmation { hold });
            }
            Admission::Hold(_) => {
                self.execute(&mut session, context, &call, true, Requested::none())
                    .await
            }
            Admission::Run => {
                self.execute(&mut session, context, &call, false, Requested::none())
                    .await
            }
        };
        let changes = session.unsynced.clone();
        let plan = self.plan_unsynced(&mut session);
        if plan.is_some() {
            crate::metrics::global().sync_plan("emitted");
        }
        self.inner.store.save(&session).await?;
        crate::metrics::global().uncertain_writes(&session.thread_id, session.uncertain.len());
        Ok(DirectOutcome::Done {
            output: Box::new(output),
            sync_plan: plan,
            changes,
        })
    }
}

impl Agent {
    /// The plan of the session's Stripe changes not yet handed over (taken out of it), signed
    /// when the agent signs plans, and recorded as sent; `None` when there are none.
    pub(super) fn plan_unsynced(&self, session: &mut super::Session) -> Option<SyncPlan> {
        let mut ledger = SyncLedger::new();
        for mutation in session.unsynced.drain(..) {
            ledger.record(mutation);
        }
        let mut plan = ledger.plan(&self.inner.mapping, &session.provenance);
        if let (Some(plan), Some(key)) = (&mut plan, &self.inner.plan_key) {
            plan.sign(key);
        }
        if let Some(plan) = &plan {
            session.syncs.sent(plan);
        }
        plan
    }
}

/// The call id of a direct call: the tool and the SHA-256 of its canonical arguments, so a
/// repeat of the same call in the same conversation has the same idempotency key.
fn direct_call_id(name: &str, arguments: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0]);
    hasher.update(crate::sync::canonical_json(arguments).as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("direct_{hex}")
}
