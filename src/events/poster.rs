//! The room post: pending syncs of an account handed to Altan in the account's thread
//! (`POST {base}/v2/threads/{thread}/messages?agent_id=...`), batched per window, with retries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::pending_syncs::{PendingEntry, PendingStore};
use crate::retry::{Attempt, RetryPolicy};
use crate::sync::{
    AnswerInput, Member, PlanSigningKey, Room, SyncLedger, SyncMapping, compose_answer,
};

/// Where and how handoffs are posted; `Debug` shows no token (it is a [`SecretString`]).
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// The room API base URL, e.g. `https://api.altan.ai` (or a local stand-in).
    pub base_url: String,
    /// This agent's id, sent as `agent_id`.
    pub agent_id: String,
    /// Altan account id → the thread its handoffs go to; accounts without one wait for the
    /// next answer instead.
    pub threads: HashMap<String, String>,
    /// Altan's member id, for `[@Altan](/member/<id>)`.
    pub altan_member_id: Option<String>,
    /// Bearer token for the room API.
    pub token: Option<SecretString>,
    /// Events arriving within this window after the first one go in one message.
    pub window: Duration,
    /// Tries per post, the first included (5 by default).
    pub max_attempts: u32,
    /// The wait before the first retry, doubling after each (250 ms by default).
    pub base_delay: Duration,
    /// The key the posted plans are signed with (`serve --plan-signing-key`).
    pub plan_key: Option<PlanSigningKey>,
}

impl RoomConfig {
    /// Posts to `base_url` as `agent_id`, with no threads bound yet, a 2 s window and the
    /// default retries.
    pub fn new(base_url: &str, agent_id: &str) -> RoomConfig {
        RoomConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            agent_id: agent_id.to_owned(),
            threads: HashMap::new(),
            altan_member_id: None,
            token: None,
            window: Duration::from_secs(2),
            max_attempts: 5,
            base_delay: Duration::from_millis(250),
            plan_key: None,
        }
    }
}

/// The longest wait between two tries of one post.
const MAX_POST_WAIT: Duration = Duration::from_secs(10);

/// A background poster; cloning shares it. Needs a Tokio runtime.
#[derive(Debug, Clone)]
pub struct RoomPoster {
    tx: mpsc::UnboundedSender<String>,
}

impl RoomPoster {
    /// Starts the worker that batches and posts.
    pub fn spawn(
        config: RoomConfig,
        store: Arc<dyn PendingStore>,
        mapping: SyncMapping,
    ) -> RoomPoster {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker(config, store, mapping, rx));
        RoomPoster { tx }
    }

    /// New pending syncs for an account: a post follows after the window.
    pub fn notify(&self, account_id: &str) {
        let _ = self.tx.send(account_id.to_owned());
    }
}

async fn worker(
    config: RoomConfig,
    store: Arc<dyn PendingStore>,
    mapping: SyncMapping,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!("room poster disabled: cannot build the HTTP client: {e}");
            return;
        }
    };
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let next = due.values().min().copied();
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(account) => {
                    if config.threads.contains_key(&account) {
                        due.entry(account).or_insert_with(|| Instant::now() + config.window);
                    }
                }
                None if due.is_empty() => return,
                None => {
                    // Shutting down: post what is due now.
                    for (account, _) in std::mem::take(&mut due) {
                        post_pending(&config, &http, store.as_ref(), &mapping, &account).await;
                    }
                    return;
                }
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                let ready: Vec<String> = due.iter().filter(|(_, t)| **t <= now).map(|(a, _)| a.clone()).collect();
                for account in ready {
                    due.remove(&account);
                    post_pending(&config, &http, store.as_ref(), &mapping, &account).await;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The handoff text for pending entries, its plan signed with `key` when there is one;
/// `None` when they make no plan.
pub fn handoff_text(
    entries: &[PendingEntry],
    mapping: &SyncMapping,
    altan_member_id: Option<&str>,
    key: Option<&PlanSigningKey>,
) -> Option<String> {
    let mut ledger = SyncLedger::new();
    for e in entries {
        ledger.record(e.mutation.clone());
    }
    let mut plan = ledger.plan(mapping, &())?;
    if let Some(key) = key {
        plan.sign(key);
    }
    let mut events: Vec<&str> = entries.iter().map(|e| e.event_id.as_str()).collect();
    events.dedup();
    let intro = format!(
        "Stripe changed outside this conversation (checkout, the dashboard or Stripe itself); {} event{} need{} a database sync: {}.",
        events.len(),
        if events.len() == 1 { "" } else { "s" },
        if events.len() == 1 { "s" } else { "" },
        events.join(", ")
    );
    let room = Room {
        altan: Member::new("Altan", altan_member_id.map(str::to_owned)),
        ..Room::default()
    };
    let answer = compose_answer(AnswerInput {
        model_text: &intro,
        plan: Some(&plan),
        inconsistencies: &[],
        room: &room,
        agents_bouncing: false,
        cut: false,
    });
    Some(answer.text)
}

async fn post_pending(
    config: &RoomConfig,
    http: &reqwest::Client,
    store: &dyn PendingStore,
    mapping: &SyncMapping,
    account: &str,
) {
    let Some(thread) = config.threads.get(account) else {
        return;
    };
    let entries = match store.pending(account).await {
        Ok(e) if !e.is_empty() => e,
        Ok(_) => return,
        Err(e) => {
            warn!(account, "room post skipped: {e}");
            return;
        }
    };
    let Some(text) = handoff_text(
        &entries,
        mapping,
        config.altan_member_id.as_deref(),
        config.plan_key.as_ref(),
    ) else {
        return;
    };
    let url = format!("{}/v2/threads/{thread}/messages", config.base_url);
    let body = json!({ "text": text });
    let posted = RetryPolicy::doubling(config.max_attempts, config.base_delay, MAX_POST_WAIT)
        .run(|attempt| {
            let mut request = http
                .post(&url)
                .query(&[("agent_id", config.agent_id.as_str())])
                .json(&body);
            if let Some(token) = &config.token {
                request = request.bearer_auth(token.expose_secret());
            }
            async move {
                match request.send().await {
                    Ok(resp) if resp.status().is_success() => Attempt::Done(true),
                    Ok(resp)
                        if resp.status().is_client_error() && resp.status().as_u16() != 429 =>
                    {
                        warn!(account, status = %resp.status(), "the room API refused the handoff; the next answer carries it");
                        Attempt::Done(false)
                    }
                    Ok(resp) => {
                        warn!(account, attempt, status = %resp.status(), "room post failed; retrying");
                        Attempt::Again
                    }
                    Err(e) => {
                        warn!(
                            account,
                            attempt,
                            "room post failed: {}; retrying",
                            crate::pay::error::without_query(e)
                        );
                        Attempt::Again
                    }
                }
            }
        })
        .await;
    match posted {
        Some(true) => {
            let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
            if let Err(e) = store.remove(account, &seqs).await {
                warn!(account, "posted, but the pending entries stay: {e}");
            }
            info!(
                account,
                thread,
                entries = seqs.len(),
                "pending syncs posted to the room"
            );
            return;
        }
        Some(false) => return,
        None => {}
    }
    warn!(
        account,
        "room post gave up; the next answer carries the pending syncs"
    );
}
