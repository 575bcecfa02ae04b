//! Writes recorded before they are sent and writes whose outcome is unknown: the write-ahead
//! that survives a crash, and the replays that settle them with their own idempotency keys.

use tracing::warn;

use crate::model::ToolCall;
use crate::room::AgentContext;
use crate::tools::{ErrorCode, ToolError};

use super::{Agent, Session, StoreError, ToolCallRecord};

impl Agent {
    /// Records the calls that may change Stripe as uncertain writes and waits until that is
    /// durable, before they are sent: a crash from then until their results are absorbed
    /// leaves them to be confirmed with their keys by the next answer, never lost. Absorbing a
    /// result settles each one. Returns the keys recorded for this attempt; when they cannot
    /// be recorded, the entries are taken back and the writes must not be sent.
    pub(super) async fn write_ahead<'c>(
        &self,
        session: &mut Session,
        calls: impl IntoIterator<Item = (&'c ToolCall, &'c String)>,
    ) -> Result<Vec<String>, StoreError> {
        let mut recorded = Vec::new();
        for (call, key) in calls {
            if self.inner.tools.writes_to_stripe(&call.name) && session.record_uncertain(call, key)
            {
                recorded.push(key.clone());
            }
        }
        if !recorded.is_empty()
            && let Err(e) = self.inner.store.save(session).await
        {
            for key in &recorded {
                session.settle_uncertain(key);
            }
            return Err(e);
        }
        Ok(recorded)
    }

    /// Replays each write of unknown outcome with its own idempotency key: Stripe answers with
    /// what the first attempt did, or does it now, once. Applied writes join the sync plan;
    /// writes Stripe refuses outright are dropped; the rest wait for the next answer. Each replay is
    /// listed among the answer's tool calls as `<call id>-confirm`. Returns whether the session
    /// changed. Cancelling it between replays loses nothing: each settles on its own.
    pub(super) async fn settle_uncertain(
        &self,
        session: &mut Session,
        context: &AgentContext,
        records: &mut Vec<ToolCallRecord>,
    ) -> bool {
        let mut changed = false;
        for write in session.uncertain.clone() {
            if unix_now().saturating_sub(write.since) > KEY_LIFETIME_SECS {
                warn!(
                    tool = %write.call.name,
                    call = %write.call.id,
                    "a write of unknown outcome is older than Stripe keeps idempotency keys; not replayed, reconcile finds it if it happened"
                );
                session.settle_uncertain(&write.key_id);
                changed = true;
                continue;
            }
            let output = self
                .call_tool_with_key(session, context, &write.call, &write.key_id)
                .await;
            let confirm = ToolCall {
                id: format!("{}-confirm", write.call.id),
                ..write.call.clone()
            };
            records.push(ToolCallRecord::of(&confirm, &output));
            match &output {
                // Stripe refused the request itself: with the same key it would have answered
                // with the first attempt's result had that attempt applied, so nothing was.
                Err(e) if refused_outright(e) => {
                    session.settle_uncertain(&write.key_id);
                    changed = true;
                }
                // Unavailable, rate limited, in flight, unreadable: still unknown, tried again
                // with the next answer.
                Err(_) => {}
                Ok(_) => {
                    changed |= self.absorb(session, &write.call, &write.key_id, false, &output);
                }
            }
        }
        changed
    }
}

/// What a call's idempotency key is made from: the key of an uncertain write it repeats, so
/// the repeat cannot apply twice; otherwise the answer number (keys stay apart when a model
/// reuses call ids across answers) and the model's call id.
pub(super) fn key_id(session: &Session, call: &ToolCall) -> String {
    match session.uncertain.iter().find(|w| w.matches(call)) {
        Some(write) => write.key_id.clone(),
        None => format!("a{}-{}", session.answers, call.id),
    }
}

/// Whether Stripe refused a request itself (invalid, no such object) with no doubt about the
/// outcome: with the same idempotency key it would have answered with an earlier attempt's
/// result had that attempt applied, so none did.
pub(super) fn refused_outright(error: &ToolError) -> bool {
    !error.outcome_unknown && error.code.disposition().refused_outright
}

/// The answer for a write that was not sent because it could not be recorded first.
pub(super) fn not_recorded(error: &StoreError) -> ToolError {
    ToolError::new(
        ErrorCode::Unavailable,
        "The change was not sent: this agent could not save its records first. Nothing was changed; try again later or tell the user.",
    )
    .with_operator_detail(format!("write-ahead save failed: {error}"))
}

/// Stripe forgets an idempotency key after 24 hours; an uncertain write older than this is not
/// replayed (the replay could apply it twice) and is left to `altan-pay reconcile`.
pub(super) const KEY_LIFETIME_SECS: u64 = 23 * 3600;

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
