//! Tool exposure, in one place: which tool definitions each model call carries (the starter
//! tools, or `open_tools` and the tools the thread opened, see [`crate::tools::open`]), what
//! a thread opens with `open_tools`, and how the model reads results (fresh, digested once
//! read, the `open_tools` exchange dropped once answered, see [`crate::tools::digest`]).
//! Before a request's first model call it also chooses the tools the request needs from its
//! words ([`ToolExposure::select`], the rules in `select.rs`), so a request that needs a tool
//! outside the starter set does not spend a model call on `open_tools`.
//! The agent hands it to the engine as its [`ToolHistory`]; the engine names no tool.

mod select;

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::engine::ToolHistory;
use crate::model::{ChatMessage, ToolCall, ToolDefs};
use crate::tools::open::OPEN_TOOLS;
use crate::tools::{Exposure, Opened, ToolSet, digest};
use select::{Candidate, Reading, Resource};

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
    /// What the selection knows of each tool, without and with the account id known.
    sizes: [Sizes; 2],
}

/// Every tool's definition size as sent, and the Stripe tools the selection chooses from.
struct Sizes {
    bytes: HashMap<&'static str, usize>,
    candidates: Vec<Candidate>,
}

impl Sizes {
    fn of(tools: &ToolSet, account_known: bool, compact: bool) -> Sizes {
        let entries = tools.entries(Opened::all(), account_known, compact);
        let size = |name: &str| {
            entries
                .iter()
                .find(|e| e.pointer("/function/name").and_then(Value::as_str) == Some(name))
                .map_or(0, |e| e.to_string().len())
        };
        let bytes: HashMap<&'static str, usize> = tools
            .names()
            .filter(|&n| n != OPEN_TOOLS)
            .map(|n| (n, size(n)))
            .collect();
        let candidates = tools
            .iter()
            .filter_map(|t| {
                let d = t.declaration();
                let name = t.definition().name;
                Some(Candidate {
                    name,
                    resource: Resource::of_route(d.routes.first()?)?,
                    action: d.action,
                    bytes: bytes.get(name).copied().unwrap_or(0),
                })
            })
            .collect();
        Sizes { bytes, candidates }
    }
}

impl ToolExposure {
    /// `compact`: the compact definitions ([`ToolSet::to_openai_json_compact`]); `all_tools`:
    /// every tool on every call instead of the starter or opened ones.
    pub fn new(tools: ToolSet, compact: bool, all_tools: bool) -> ToolExposure {
        let sizes = [
            Sizes::of(&tools, false, compact),
            Sizes::of(&tools, true, compact),
        ];
        ToolExposure {
            tools,
            compact,
            all_tools,
            built: Mutex::default(),
            sizes,
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
        let asked: Vec<String> = records
            .iter()
            .filter(|r| r.name == OPEN_TOOLS && r.error.is_none())
            .flat_map(|r| self.tools.opened_by(&r.arguments))
            .collect();
        self.add(opened_tools, asked, messages)
    }

    /// Before a request's first model call: opens the tools the request's new messages
    /// (`texts`, the agent's own echo left out) need, chosen by the rules of `select.rs` within
    /// their byte budget; whether any was new. A request that names nothing it could act on
    /// ("rename it") is about the resources of the tools the thread has. Nothing is opened when
    /// the starter tools already carry all that is chosen (a thread's first call then shares
    /// the prefix of every other), nor with `all_tools`. What the thread opened stays, so the
    /// tools of its calls only grow; they are sent in the tool set's order.
    pub fn select(
        &self,
        opened_tools: &mut Vec<String>,
        texts: &[&str],
        messages: &[ChatMessage],
        account_known: bool,
    ) -> bool {
        if self.all_tools {
            return false;
        }
        let sizes = &self.sizes[usize::from(account_known)];
        let thread = opened_tools.iter().filter_map(|n| {
            sizes
                .candidates
                .iter()
                .find(|c| c.name == n.as_str())
                .map(|c| c.resource)
        });
        let reading = Reading::of(texts).or_about(thread);
        // What the next call sends whatever is chosen: the opened tools, or the starter tools
        // the thread used (kept when it opens others).
        let kept = if opened_tools.is_empty() {
            self.used_starters(messages)
        } else {
            opened_tools.clone()
        };
        let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
        let used = kept.iter().filter_map(|n| sizes.bytes.get(n)).sum();
        let chosen = select::choose(&reading, &sizes.candidates, &kept, used);
        let starter = |n: &&str| self.tools.exposure(n) == Some(Exposure::Starter);
        if chosen.is_empty() || (opened_tools.is_empty() && chosen.iter().all(starter)) {
            return false;
        }
        let chosen = chosen.into_iter().map(str::to_string).collect();
        self.add(opened_tools, chosen, messages)
    }

    /// Adds `asked` to `opened_tools`; whether any was new. The thread's first opening keeps
    /// the starter tools the conversation (`messages`) has already called: they do not vanish
    /// from under it.
    fn add(
        &self,
        opened_tools: &mut Vec<String>,
        mut asked: Vec<String>,
        messages: &[ChatMessage],
    ) -> bool {
        if asked.is_empty() {
            return false;
        }
        if opened_tools.is_empty() {
            asked.extend(self.used_starters(messages));
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

    /// The starter tools the conversation has called.
    fn used_starters(&self, messages: &[ChatMessage]) -> Vec<String> {
        messages
            .iter()
            .flat_map(|m| &m.tool_calls)
            .filter(|c| self.tools.exposure(&c.name) == Some(Exposure::Starter))
            .map(|c| c.name.clone())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(defs: &ToolDefs) -> Vec<String> {
        defs.iter()
            .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    fn exposure() -> ToolExposure {
        ToolExposure::new(ToolSet::altan_pay(), false, false)
    }

    #[test]
    fn a_request_is_sent_the_tools_it_needs_in_the_sets_order_with_open_tools_first() {
        let x = exposure();
        let mut opened = Vec::new();
        let texts = ["Deactivate the Pro monthly price."];
        assert!(x.select(&mut opened, &texts, &[], true));
        assert_eq!(
            names(&x.definitions(&opened, true)),
            ["open_tools", "get_products", "get_prices", "update_price"]
        );
        // The same words again change nothing; a greeting neither.
        assert!(!x.select(&mut opened, &texts, &[], true));
        assert!(!x.select(&mut opened, &["Thanks, bye"], &[], true));
    }

    #[test]
    fn a_thread_keeps_what_it_has_and_names_nothing_twice() {
        let x = exposure();
        let mut opened = Vec::new();
        assert!(x.select(&mut opened, &["List my products."], &[], true));
        assert_eq!(opened, ["get_products"]);
        // "it" is what the thread works with: products.
        assert!(x.select(&mut opened, &["Rename it to Pro Plus."], &[], true));
        assert_eq!(opened, ["get_products", "update_product"]);
    }

    #[test]
    fn the_selection_never_takes_the_tools_past_the_budget() {
        let x = exposure();
        let mut opened = Vec::new();
        for text in [
            "Sign up Bo Li (bo@example.com) to Pro monthly.",
            "Give Ann's subscription (ann@example.com) 50% off for 3 months.",
            "Delete the T-shirt product.",
            "Create a coupon with the code SPRING and a checkout link.",
        ] {
            x.select(&mut opened, &[text], &[], true);
            let defs = x.definitions(&opened, true);
            let bytes: usize = defs
                .iter()
                .filter(|t| t.pointer("/function/name") != Some(&Value::from(OPEN_TOOLS)))
                .map(|t| t.to_string().len())
                .sum();
            assert!(bytes <= select::BUDGET_BYTES, "{text}: {bytes} bytes");
        }
        assert!(opened.len() >= 4, "{opened:?}");
    }

    #[test]
    fn every_tool_on_every_call_needs_no_selection() {
        let x = ToolExposure::new(ToolSet::altan_pay(), false, true);
        let mut opened = Vec::new();
        assert!(!x.select(&mut opened, &["List my products."], &[], true));
        assert!(opened.is_empty());
    }

    #[test]
    fn a_starter_tool_the_thread_used_stays_when_the_selection_opens_others() {
        let x = exposure();
        let mut used = ChatMessage::assistant(String::new());
        used.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "create_product".into(),
            arguments: "{}".into(),
        });
        let mut opened = Vec::new();
        assert!(x.select(&mut opened, &["Who are my customers?"], &[used], true));
        assert_eq!(opened, ["get_customers", "create_product"]);
    }
}
