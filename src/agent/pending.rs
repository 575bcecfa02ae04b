//! Stripe changes the agent did not make itself (events, checkout), carried by the next
//! answer of their account's thread.

use crate::room::AgentContext;
use crate::sync::Mutation;

use super::{Agent, Session, StoreFuture};

/// Stripe changes the agent did not make itself (Stripe events, checkout), waiting for the
/// next answer in their account's thread so nothing exists only in Stripe.
/// Nothing is removed until the answer that carries the changes is saved: a crash in between
/// hands them over again (the rows are upserts, a repeat is harmless), never loses them.
pub trait PendingSource: Send + Sync {
    /// The account's pending changes, oldest first, each with the receipt that removes it.
    fn pending<'a>(&'a self, account_id: &'a str) -> StoreFuture<'a, Vec<(i64, Mutation)>>;
    /// Removes the changes an answer carried, once that answer is saved.
    fn handed_over<'a>(&'a self, account_id: &'a str, receipts: &'a [i64]) -> StoreFuture<'a, ()>;
}

impl Agent {
    /// Adds the account's pending changes to the session's unsynced ones; returns the
    /// receipts to release once the answer carrying them is saved. A failing source is
    /// logged: the changes stay there for the next answer.
    pub(super) async fn take_pending(
        &self,
        session: &mut Session,
        context: &AgentContext,
    ) -> Vec<i64> {
        let (Some(source), Some(account)) = (&self.inner.pending, &context.account_id) else {
            return Vec::new();
        };
        let found = source.pending(account).await.unwrap_or_else(|e| {
            tracing::warn!(account_id = %account, "pending syncs not read: {e}");
            Vec::new()
        });
        let (receipts, pending): (Vec<i64>, Vec<Mutation>) = found.into_iter().unzip();
        session.unsynced.extend(pending);
        receipts
    }

    /// Tells the source the saved answer carried these changes.
    pub(super) async fn release_handed_over(&self, context: &AgentContext, receipts: &[i64]) {
        if let (Some(source), Some(account), false) = (
            &self.inner.pending,
            &context.account_id,
            receipts.is_empty(),
        ) && let Err(e) = source.handed_over(account, receipts).await
        {
            tracing::warn!(
                account_id = %account,
                "handed-over syncs not removed; the next answer repeats them: {e}"
            );
        }
    }
}
