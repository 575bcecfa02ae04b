//! A stand-in for the room API (`POST /v2/threads/{thread}/messages?agent_id=...`) that
//! records posts; its first attempt fails with 503, so every test also exercises the retry.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

#[derive(Default)]
pub struct RoomLog {
    pub attempts: usize,
    /// (thread, agent_id, text) of each accepted post.
    pub posts: Vec<(String, String, String)>,
}

/// Starts the stand-in on 127.0.0.1; returns its base URL and its log.
pub async fn room_standin() -> (String, Arc<Mutex<RoomLog>>) {
    let log = Arc::new(Mutex::new(RoomLog::default()));
    async fn handle(
        State(log): State<Arc<Mutex<RoomLog>>>,
        Path(thread): Path<String>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        axum::Json(body): axum::Json<Value>,
    ) -> StatusCode {
        let mut log = log.lock().unwrap();
        log.attempts += 1;
        if log.attempts == 1 {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let text = body["text"].as_str().unwrap_or_default().to_owned();
        let agent = q.get("agent_id").cloned().unwrap_or_default();
        log.posts.push((thread, agent, text));
        StatusCode::CREATED
    }
    let app = axum::Router::new()
        .route("/v2/threads/{thread}/messages", post(handle))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

/// A handoff of a completed checkout: both rows upserted, one mention of Altan, at the end.
pub fn assert_handoff(text: &str, customer: &str, subscription: &str) {
    assert!(
        text.contains(&format!("upsert customers {customer}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("upsert subscriptions {subscription}")),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("[@Altan](/member/mem_altan)"),
        "{text}"
    );
    assert_eq!(text.matches("@Altan").count(), 1, "{text}");
}
