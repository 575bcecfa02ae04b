//! Session saves queued and not yet committed, per thread, which a load of the thread waits for
//! (both backends queue saves for group commit).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// Session saves queued and not yet committed, per thread. A queued save is meant to be read
/// back by the thread's next turn: a load waits until its thread has none in flight, so a turn
/// that was dropped mid-way never hands the next one an older session. The wait is a task's,
/// never a thread's.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    counts: Mutex<HashMap<String, usize>>,
    settled: Notify,
}

impl InFlight {
    pub(super) fn started(&self, thread_id: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(thread_id.to_string()).or_default() += 1;
    }

    pub(super) fn finished(&self, thread_id: &str) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(thread_id) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(thread_id);
                }
            }
        }
        self.settled.notify_waiters();
    }

    /// Whether a save of `thread_id` is queued and not committed yet.
    pub(super) fn busy(&self, thread_id: &str) -> bool {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.contains_key(thread_id)
    }

    /// Waits (at most `limit`) until no save of `thread_id` is in flight.
    pub(super) async fn wait_for(&self, thread_id: &str, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                // Registered before the check, so a save finishing in between still wakes it.
                let settled = self.settled.notified();
                if !self.busy(thread_id) {
                    return;
                }
                settled.await;
            }
        })
        .await;
    }
}
