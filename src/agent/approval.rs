//! Whether a call may run (the policy verdict, verifying targets first), and calls held for a
//! person's approval until [`Agent::decide_approval`].

use tracing::Instrument;

use crate::model::{ChatMessage, ToolCall};
use crate::policy::{self, CallScope, Hold, Requested, Verdict};
use crate::room::AgentContext;
use crate::tools::{ErrorCode, ToolError, ToolOutput, model_content};

use super::{Agent, AgentError, Answer, Session, TurnOptions};

impl Agent {
    /// Runs (or drops) the held call `approval_id`, then lets the model report on it.
    pub(super) async fn resume_held_call(
        &self,
        thread_id: &str,
        context: &AgentContext,
        approval_id: &str,
        approve: bool,
        options: TurnOptions,
    ) -> Result<Answer, AgentError> {
        let lock = self.thread_lock(thread_id);
        let _guard = lock.lock().await;
        let mut session = self.load(thread_id).await?;
        let index = session
            .approvals
            .iter()
            .position(|a| a.approval_id == approval_id)
            .ok_or_else(|| AgentError::UnknownApproval(approval_id.to_string()))?;
        let pending = session.approvals.remove(index);
        session.syncs.answer_started();
        let note = if approve {
            let output = self
                .execute(
                    &mut session,
                    context,
                    &pending.call,
                    true,
                    Requested::none(),
                )
                .await;
            format!(
                "[platform] The held call {} {} was approved and has run. Result: {}",
                pending.call.name,
                pending.call.arguments,
                model_content(&output)
            )
        } else {
            format!(
                "[platform] The held call {} {} was declined; it did not run.",
                pending.call.name, pending.call.arguments
            )
        };
        session.history.push(ChatMessage::user(note));
        // Durable before the answer (the final save waits for it), not before the model call.
        self.inner.store.save_queued(&session);
        // Nothing new was said in the room: a destructive call the model makes now is held.
        self.run(&mut session, context, &options, Requested::none())
            .instrument(super::turn::turn_span(thread_id))
            .await
    }

    /// Decides whether a call may run, verifying the objects it targets first. `requested`:
    /// the destructive effects a user asked for in this turn's messages.
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        context: &AgentContext,
        call: &ToolCall,
        requested: Requested,
    ) -> Admission {
        // An unknown tool does not run; the tool set tells the model which ones exist.
        let Some(tool) = self.inner.tools.get(&call.name).cloned() else {
            return Admission::Run;
        };
        for _ in 0..2 {
            let verdict = policy::check(
                &self.inner.policy,
                &session.provenance,
                CallScope {
                    trusted_account_id: context.account_id.as_deref(),
                    approved: false,
                    requested,
                },
                tool.as_ref(),
                &call.arguments,
            );
            match verdict {
                Verdict::Run => return Admission::Run,
                Verdict::NeedsApproval(why) => return Admission::Hold(why),
                Verdict::Refuse(violation) => {
                    return Admission::Answer(Box::new(Err(violation.error())));
                }
                Verdict::VerifyFirst { tool, id } => {
                    match self.verify_target(session, context, call, tool, &id).await {
                        Ok(found) => session.provenance.observe_result(&found.content),
                        Err(e) => {
                            let error = ToolError::new(
                                e.code,
                                format!(
                                    "`{id}` could not be verified in Stripe before {}: {}",
                                    call.name, e.model_message
                                ),
                            );
                            return Admission::Answer(Box::new(Err(error)));
                        }
                    }
                }
            }
        }
        Admission::Answer(Box::new(Err(ToolError::new(
            ErrorCode::Internal,
            "the object could not be verified",
        ))))
    }
}

pub(super) enum Admission {
    Run,
    Answer(Box<ToolOutput>),
    Hold(Hold),
}
