//! The agent loop: [`turn::Turn`] is the state machine (no I/O); the agent
//! ([`crate::agent`]) drives it against a model, the tools and the policy, with deadlines,
//! cancellation and events.

pub mod turn;

pub use turn::{
    Limits, Refusal, RefusalReason, Step, StopReason, ToolHistory, Turn, TurnEnd, Verbatim,
};
