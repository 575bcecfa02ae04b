//! What a run of a transcript produced, turn by turn: the answer, the model calls and Pay
//! exchanges made, and the sandbox's objects after each turn; what the checks judge.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::format::{ModelCall, PayExchange};
use crate::agent::Answer;

/// What one turn did.
#[derive(Debug, Clone)]
pub struct TurnRun {
    /// The agent's answer; `None` when the turn failed.
    pub answer: Option<Answer>,
    /// Why there is no answer.
    pub error: Option<String>,
    /// The model calls made, as sent and received.
    pub model_calls: Vec<ModelCall>,
    /// The Altan Pay exchanges the tools made.
    pub pay: Vec<PayExchange>,
    /// Every object per kind after the turn, oldest first.
    pub state: BTreeMap<String, Vec<Value>>,
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// One entry per turn, in order.
    pub turns: Vec<TurnRun>,
    /// Ids present in the initial state (eval matches every other id as "a new one").
    pub seeded_ids: BTreeSet<String>,
}
