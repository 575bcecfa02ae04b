//! A local Altan Pay API server on the same route table as the client: the embedded sandbox
//! (a stateful Stripe emulator) or a Stripe REST upstream behind it.

pub mod upstream;

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

/// One Altan Pay API call, after the gateway matched its route and opened the envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct PayRequest {
    /// The route table's operation name, e.g. `products.create`.
    pub operation: String,
    pub account_id: String,
    pub stripe_connect_id: Option<String>,
    /// The object id from the path, for retrieve/update/delete/cancel.
    pub id: Option<String>,
    /// Stripe parameters: the `payload` of a POST, or the decoded query of a GET
    /// (query values arrive as strings; the backend coerces them).
    pub params: Map<String, Value>,
    pub idempotency_key: Option<String>,
}

/// What the backend answers: an HTTP status and a Stripe-shaped JSON body
/// (the object, a list, a deleted object, or `{"error": {...}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct PayResponse {
    pub status: u16,
    pub body: Value,
}

/// Something that can serve Altan Pay operations: the sandbox or a Stripe upstream.
pub trait Backend: Send + Sync + 'static {
    fn handle(&self, request: PayRequest)
    -> Pin<Box<dyn Future<Output = PayResponse> + Send + '_>>;
}
