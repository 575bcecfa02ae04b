//! altan-pay: a runtime for the Altan Pay agent.
//!
//! Parts (see DESIGN.md): [`stripe`] object types, [`pay`] the Altan Pay API client,
//! [`tools`] the tools the model calls, [`prompt`] the system prompt, [`model`] the chat
//! model, [`engine`] the loop, [`policy`] the rules in code, [`gateway`] a local Altan Pay API.

pub mod agent;
pub mod chat;
#[cfg(feature = "sandbox")]
pub mod config;
pub mod engine;
#[cfg(feature = "server")]
pub mod events;
#[cfg(feature = "sandbox")]
pub mod gateway;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod mirror;
pub mod model;
pub mod pay;
pub mod policy;
pub mod prompt;
pub mod retry;
pub mod room;
#[cfg(feature = "server")]
pub mod server;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub mod store;
pub mod stripe;
pub mod sync;
pub mod telemetry;
pub mod tools;
#[cfg(feature = "transcripts")]
pub mod transcript;
