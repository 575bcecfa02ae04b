//! altan-pay: a runtime for the Altan Pay agent.
//!
//! Parts (see DESIGN.md): [`stripe`] object types, [`pay`] the Altan Pay API client,
//! [`tools`] the tools the model calls, [`prompt`] the system prompt, [`model`] the chat
//! model, [`engine`] the loop, [`policy`] the rules in code, and, with the default features,
//! `gateway` a local Altan Pay API, `server` the chat endpoint, `store` SQLite and PostgreSQL.
//!
//! The types an embedding service needs are at the root: [`Agent`] and its [`AgentBuilder`],
//! a [`ChatModel`] ([`OpenAiModel`], or [`ScriptedModel`] with the `scripted` feature), the
//! Altan Pay client ([`PayClient`], [`PayConfig`], [`RouteTable`]), the room's
//! [`AgentContext`] and [`RoomMessage`], the [`Answer`], and what a tool of your own needs
//! ([`AgentTool`] with its [`Facts`], given to [`AgentBuilder::tool`]).
//!
//! Cargo features: `default` is everything the `altan-pay` binary needs. With
//! `default-features = false` the library builds the agent with its model and Altan Pay HTTP
//! clients and the in-memory session store, and none of the servers, the SQLite or PostgreSQL
//! stores, the sandbox or the OTLP exporter; `scripted` adds the scripted model for tests.

#![deny(missing_docs)]

pub mod agent;
pub mod chat;
#[cfg(feature = "sandbox")]
pub mod config;
pub mod engine;
#[cfg(feature = "server")]
pub mod events;
#[cfg(feature = "sandbox")]
pub mod gateway;
#[cfg(feature = "mcp")]
pub mod mcp;
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

pub use agent::{Agent, AgentBuilder, AgentError, Answer, MemoryStore, SessionStore};
pub use model::{ChatModel, ModelError, OpenAiConfig, OpenAiModel};
#[cfg(feature = "scripted")]
pub use model::{ScriptedModel, ScriptedStep};
pub use pay::{PayClient, PayConfig, RouteTable};
pub use room::{AgentContext, MemberKind, RoomMessage};
pub use tools::{AgentTool, Facts, OwnCall, ToolError};

/// The README's Rust examples, compiled as doctests.
#[cfg(all(doctest, feature = "scripted"))]
#[doc = include_str!("../README.md")]
mod readme {}
