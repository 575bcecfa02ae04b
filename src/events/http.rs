//! The HTTP face of event intake, as an axum `Router` the server mounts:
//! `POST /v1/stripe/events` and `GET /v1/accounts/{account_id}/pending-syncs`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::warn;

use super::intake::EventsState;

/// Stripe's events are well under this; bigger bodies are refused before parsing.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// The routes; state is shared with whoever else holds the `Arc` (the Agent's hook).
pub fn router(state: Arc<EventsState>) -> Router {
    Router::new()
        .route("/v1/stripe/events", post(receive))
        .route("/v1/accounts/{account_id}/pending-syncs", get(pending))
        .layer(DefaultBodyLimit::max(MAX_EVENT_BYTES))
        .with_state(state)
}

fn error(status: u16, code: &str, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn receive(
    State(state): State<Arc<EventsState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match state.receive(signature, &body).await {
        Ok(receipt) => {
            let mut out = json!({"received": true});
            if let (Value::Object(out), Ok(Value::Object(r))) =
                (&mut out, serde_json::to_value(&receipt))
            {
                out.extend(r);
            }
            (StatusCode::OK, axum::Json(out)).into_response()
        }
        Err(e) => {
            warn!("Stripe event refused: {e}");
            error(e.status(), e.code(), e.to_string())
        }
    }
}

async fn pending(
    State(state): State<Arc<EventsState>>,
    Path(account_id): Path<String>,
) -> Response {
    if !state.config().accounts.serves(&account_id) {
        return error(
            404,
            "account_not_served",
            format!("this endpoint does not serve account {account_id}"),
        );
    }
    match state.pending(&account_id).await {
        Ok(entries) => {
            let plan = state.pending_plan(&entries);
            let items: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "seq": e.seq,
                        "event_id": e.event_id,
                        "received_at": e.received_at,
                        "operation": e.mutation.operation,
                        "kind": e.mutation.kind,
                        "id": e.mutation.id,
                        "deleted": matches!(e.mutation.outcome, crate::sync::Outcome::Deleted),
                    })
                })
                .collect();
            axum::Json(json!({
                "account_id": account_id,
                "pending": items,
                "sync_plan": plan.map(|p| p.to_json()),
            }))
            .into_response()
        }
        Err(e) => error(500, "store_failed", e.to_string()),
    }
}
