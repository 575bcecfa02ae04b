//! Tool exposure, in one place: which tool definitions each model call carries (the starter
//! tools, or `open_tools` and the tools the thread opened, see [`crate::tools::open`]), what
//! a thread opens with `open_tools`, and how the model reads results (fresh, digested once
//! read, the `open_tools` exchange dropped once answered, see [`crate::tools::digest`]).
//! The agent hands it to the engine as its [`ToolHistory`]; the engine names no tool.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::engine::ToolHistory;
use crate::model::{ChatMessage, ToolCall, ToolDefs};
use crate::tools::open::OPEN_TOOLS;
use crate::tools::{Exposure, Opened, ToolSet, digest};

use super::ToolCallRecord;

/// Tool sets kept serialised at most (each a few KB).
const MAX_CACHED_TOOL_SETS: usize = 256;

/// The one owner of what the model is shown of the tools (see the module docs).
pub struct ToolExposure {
    tools: ToolSet,
    compact: bool,
    all_tools: bool,
    /// The definitions sent per (opened tools, account id known): few combinations in
    /// practice, each built and serialised once.
    built: Mutex<HashMap<(Opened, bool), ToolDefs>>,
}

impl ToolExposure {
    /// `compact`: the compact definitions ([`ToolSet::to_openai_json_compact`]); `all_tools`:
    /// every tool on every call instead of the starter or opened ones.
    pub fn new(tools: ToolSet, compact: bool, all_tools: bool) -> ToolExposure {
        ToolExposure {
            tools,
            compact,
            all_tools,
            built: Mutex::default(),
        }
    }

    /// The tools of a thread's next model call: the starter tools while `opened_tools` is
    /// empty, else `open_tools` and the tools it opened. `account_known`: the trusted context
    /// carries the account id, so no tool asks for it.
    pub fn definitions(&self, opened_tools: &[String], account_known: bool) -> ToolDefs {
        let opened = if self.all_tools {
            Opened::all()
        } else {
            self.tools.opened(opened_tools)
        };
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        let key = (opened, account_known);
        // Threads open few distinct sets; a bound keeps an unusual mix from growing the map.
        if built.len() >= MAX_CACHED_TOOL_SETS && !built.contains_key(&key) {
            built.clear();
        }
        if let Some(defs) = built.get(&key) {
            return defs.clone();
        }
        let defs = ToolDefs::new(
            self.tools
                .entries(key.0.clone(), account_known, self.compact),
        );
        built.insert(key, defs.clone());
        defs
    }

    /// Adds the tools this step's successful `open_tools` calls asked for to `opened_tools`;
    /// whether any was new. The thread's first opening keeps the starter tools the
    /// conversation (`messages`) has already called: they do not vanish from under it.
    pub fn open(
        &self,
        opened_tools: &mut Vec<String>,
        records: &[ToolCallRecord],
        messages: &[ChatMessage],
    ) -> bool {
        let mut asked: Vec<String> = records
            .iter()
            .filter(|r| r.name == OPEN_TOOLS && r.error.is_none())
            .flat_map(|r| self.tools.opened_by(&r.arguments))
            .collect();
        if asked.is_empty() {
            return false;
        }
        if opened_tools.is_empty() {
            let used = messages.iter().flat_map(|m| &m.tool_calls);
            asked.extend(
                used.filter(|c| self.tools.exposure(&c.name) == Some(Exposure::Starter))
                    .map(|c| c.name.clone()),
            );
        }
        let mut changed = false;
        for name in asked {
            if !opened_tools.contains(&name) {
                opened_tools.push(name);
                changed = true;
            }
        }
        changed
    }
}

impl ToolHistory for ToolExposure {
    fn fresh(&self, content: &Value, changed: bool) -> String {
        digest::fresh(content, changed)
    }

    fn digest(&self, content: &str) -> Option<String> {
        digest::digest(content)
    }

    /// An exchange that only opened tools: the tools it opened are in the definitions, and
    /// the exchange says nothing more.
    fn drops_exchange(&self, calls: &[ToolCall]) -> bool {
        calls.iter().all(|c| c.name == OPEN_TOOLS)
    }
}
