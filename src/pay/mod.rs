//! The Altan Pay API client: route table, envelope, idempotency, retries, typed errors.
//! Everything that crosses HTTP to the Altan Pay API (or a local gateway) goes through here.

pub mod client;
pub(crate) mod error;
pub mod form;
pub(crate) mod idempotency;
pub mod routes;

pub use client::{IDEMPOTENCY_HEADER, PayCall, PayClient, PayConfig, RetryPolicy};
pub use error::PayError;
pub use idempotency::idempotency_key;
pub use routes::{Method, Route, RouteError, RouteKind, RouteTable, RouteValues};
