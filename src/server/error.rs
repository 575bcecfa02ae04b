//! Errors as JSON (`{"error": {"type", "message"}}`) and extractors whose rejections use that
//! shape, so axum's plain-text rejections never reach a client.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::ServerState;
use crate::agent::{AgentError, StoreError};

/// An HTTP error with a machine-readable type and a sentence that names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable `error.type` of the body (`invalid_json`, `forbidden`, ...).
    pub kind: &'static str,
    /// The sentence for a person: what is wrong and, where it helps, what to send instead.
    pub message: String,
    /// Seconds for a `Retry-After` header (a busy thread).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, type and message, and no `Retry-After`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, in seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    /// A 400 with this type and message.
    pub fn bad_request(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, kind, message)
    }

    /// A 500 `internal_error`: the server failed, not the request.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The JSON body, also used inside SSE `response.failed` events.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"type": self.kind, "message": self.message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is never read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::LeaseLost { thread_id } => {
                tracing::warn!(thread = %thread_id, "a turn lost its thread lease; its answer was not saved");
                ApiError::new(
                    StatusCode::CONFLICT,
                    "lease_lost",
                    format!(
                        "thread {thread_id}: this turn lost the thread's lease to another turn while it ran (its lease connection to the database was lost), so its answer was not saved; read the thread and send the message again if it is still needed"
                    ),
                )
            }
            StoreError::Failed(_) => {
                tracing::error!(error = %e, "session store failed");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        match e {
            AgentError::UnknownApproval(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "approval_not_found",
                format!("no pending approval `{id}` in this thread"),
            ),
            AgentError::Store(e) => e.into(),
            AgentError::Setup(m) => ApiError::internal(m),
        }
    }
}

/// A JSON body read with the server's size limit, checked for UTF-8, parsed with the path of
/// the field that is wrong. The raw bytes are kept for idempotency hashing.
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// The bytes as received, for the idempotency hash.
    pub raw: axum::body::Bytes,
}

impl<T: DeserializeOwned> FromRequest<ServerState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ServerState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            if !ct.starts_with("application/json") && !ct.contains("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("the body must be JSON (Content-Type: application/json), not `{ct}`"),
                ));
            }
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than the limit of {limit} bytes"),
            )
        };
        let raw = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                if is_length_limit(&e) {
                    too_large()
                } else if let Some(timeout) = source_of::<super::BodyTimeout>(&e) {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        format!("{timeout}; the connection is closed"),
                    )
                } else {
                    ApiError::bad_request(
                        "body_unreadable",
                        format!("the body could not be read: {e}"),
                    )
                }
            })?;
        let value = parse_json(&raw)?;
        Ok(JsonBody { value, raw })
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    source_of::<http_body_util::LengthLimitError>(e).is_some()
}

/// The first error of type `E` in `e`'s chain of causes.
fn source_of<E: std::error::Error + 'static>(e: &axum::Error) -> Option<&E> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<E>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

/// Parses a body: invalid UTF-8, bad JSON and wrong fields each get their own error type,
/// and data errors name the field's path (`messages[0].text`).
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "the body is empty; a JSON object is expected",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let at = if path == "." {
                String::new()
            } else {
                format!("`{path}`: ")
            };
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("{at}{inner}"),
            )
        } else {
            ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
            )
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

/// Thread ids: 1 to 128 characters of letters, digits and `-_.:`, so they are safe in
/// logs, URLs and keys.
pub fn check_thread_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_thread_id",
            "the thread id must be 1 to 128 characters of letters, digits and - _ . :",
        ))
    }
}

/// `{thread_id}` from the path, validated.
pub struct ThreadId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ThreadId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        check_thread_id(&id)?;
        Ok(ThreadId(id))
    }
}

/// `{thread_id}` and `{approval_id}` from the path.
pub struct ApprovalPath {
    /// The thread the approval belongs to, checked like any thread id.
    pub thread_id: String,
    /// The approval's id, as the answer that held the call gave it.
    pub approval_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ApprovalPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((thread_id, approval_id)) =
            Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
        check_thread_id(&thread_id)?;
        Ok(ApprovalPath {
            thread_id,
            approval_id,
        })
    }
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/server.md",
    )
}

/// Known routes called with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see docs/server.md",
    )
}
