//! The answer a turn ends with: the room message, its sync plan and mention, the tool calls
//! and token usage; composing it from the model's last words.

use serde::Serialize;
use serde_json::Value;

use crate::engine::{StopReason, Turn};
use crate::model::ToolCall;
use crate::model::Usage;
use crate::room::AgentContext;
use crate::sync::{
    AnswerInput, Member, Mention, Room, SyncPlan, compose_answer, detect_agents_bouncing,
};
use crate::tools::{ErrorCode, ToolOutput, model_content};

use super::{Agent, PendingApproval, Session};

/// One tool call of an answer, for callers and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallRecord {
    /// The model's id of the call (`call_...`), echoed in the tool message.
    pub id: String,
    /// The tool the model called.
    pub name: String,
    /// The arguments exactly as the model sent them (JSON text, not re-serialized).
    pub arguments: String,
    /// What the model read back.
    pub result: Value,
    /// Why the call failed, when it did; `None` for a call that ran.
    pub error: Option<ErrorCode>,
}

impl ToolCallRecord {
    /// The record of a finished call: what was asked and what the model read back. Every
    /// listed call is counted in the metrics.
    pub(super) fn of(call: &ToolCall, output: &ToolOutput) -> ToolCallRecord {
        let error = output.as_ref().err().map(|e| e.code);
        crate::metrics::global().tool_call(&call.name, error);
        ToolCallRecord {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
            result: model_content(output),
            error,
        }
    }
}

/// How the answer came about, with why it did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEnd {
    /// The model answered.
    Completed,
    /// The model's answer reached its output limit and was cut; the text says so.
    Cut,
    /// A limit, the deadline or cancellation ended the turn; the text says so.
    Stopped(StopReason),
    /// The model could not be reached; whatever Stripe already did is still handed over.
    ModelFailed {
        /// What the model client reported.
        error: String,
    },
}

impl AnswerEnd {
    /// The end's name on the wire and in transcripts: `completed`, `cut`, `stopped`,
    /// `model_failed`.
    pub fn name(&self) -> &'static str {
        match self {
            AnswerEnd::Completed => "completed",
            AnswerEnd::Cut => "cut",
            AnswerEnd::Stopped(_) => "stopped",
            AnswerEnd::ModelFailed { .. } => "model_failed",
        }
    }

    /// Why the turn did not complete, in words for the caller (`None` when it completed).
    pub fn reason(&self) -> Option<String> {
        match self {
            AnswerEnd::Completed => None,
            AnswerEnd::Cut => {
                Some("the model's answer reached its output limit and was cut".to_string())
            }
            AnswerEnd::Stopped(reason) => Some(reason.describe().to_string()),
            AnswerEnd::ModelFailed { error } if error.is_empty() => {
                Some(StopReason::ModelFailed.describe().to_string())
            }
            AnswerEnd::ModelFailed { error } => {
                Some(format!("{} ({error})", StopReason::ModelFailed.describe()))
            }
        }
    }
}

impl Serialize for AnswerEnd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// The agent's answer to new room messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The message to post in the room: the model's words, the sync plan, the mention.
    pub text: String,
    /// Who the answer hands over to (Altan), if anyone.
    pub mention: Option<Mention>,
    /// Exactly the Stripe changes of this answer (and any earlier ones not yet handed over),
    /// signed when the agent has a plan signing key.
    pub sync_plan: Option<SyncPlan>,
    /// How the answer came about; [`AnswerEnd::reason`] says why it did not complete.
    pub end: AnswerEnd,
    /// Tokens of each model call, in order.
    pub usage: Vec<Usage>,
    /// Every tool call of the answer, refused and failed ones included, in the order the model made them.
    pub tool_calls: Vec<ToolCallRecord>,
    /// Calls waiting for a person's approval (see [`Agent::decide_approval`]).
    pub approvals: Vec<PendingApproval>,
}

impl Answer {
    /// Tokens of all the answer's model calls added together.
    pub fn total_usage(&self) -> Usage {
        let mut total = Usage::default();
        for u in &self.usage {
            total += *u;
        }
        total
    }
}

impl Agent {
    /// Turns the model's last words into the room message: sync plan, inconsistencies, and
    /// exactly one mention of Altan (none when agents are bouncing).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn compose(
        &self,
        session: &mut Session,
        context: &AgentContext,
        model_text: &str,
        end: AnswerEnd,
        turn: &Turn,
        tool_calls: Vec<ToolCallRecord>,
        approvals: Vec<PendingApproval>,
    ) -> Answer {
        let plan = self.plan_unsynced(session);
        let inconsistencies = session.syncs.inconsistencies();
        session
            .syncs
            .mark_reported(inconsistencies.iter().map(|i| i.sync_id.as_str()));
        let bouncing = detect_agents_bouncing(&session.trail, self.inner.bounce_threshold);
        let room = room_of(context);
        let composed = compose_answer(AnswerInput {
            model_text,
            plan: plan.as_ref(),
            inconsistencies: &inconsistencies,
            room: &room,
            agents_bouncing: bouncing,
            cut: end == AnswerEnd::Cut,
        });
        Answer {
            text: composed.text,
            mention: composed.mention,
            sync_plan: plan,
            end,
            usage: turn.usage().to_vec(),
            tool_calls,
            approvals,
        }
    }
}

/// The room as the answer composer needs it: who we are, Altan, and everyone else.
pub(super) fn room_of(context: &AgentContext) -> Room {
    let altan = context.altan();
    Room {
        me: Member::new(context.agent_name(), context.agent_member_id.clone()),
        altan: Member::new(
            altan.map_or(crate::room::ALTAN, |a| a.name.as_str()),
            altan.map(|a| a.member_id.clone()),
        ),
        others: context
            .members
            .iter()
            .filter(|m| Some(&m.member_id) != context.agent_member_id.as_ref())
            .filter(|m| altan.is_none_or(|a| a.member_id != m.member_id))
            .map(|m| Member::new(m.name.clone(), Some(m.member_id.clone())))
            .collect(),
    }
}
