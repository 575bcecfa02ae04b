//! The Altan Pay API client: route table, envelope, idempotency, retries, typed errors.
//! Everything that crosses HTTP to the Altan Pay API (or a local gateway) goes through here.

pub mod form;
pub mod routes;

pub use routes::{Method, Route, RouteError, RouteKind, RouteTable, RouteValues};
