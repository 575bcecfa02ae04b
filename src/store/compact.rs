//! Bounded history: the last N messages, cut only where a user message starts, and tool
//! results older than the last K user turns replaced by the ids they carried.

use serde_json::{Value, json};

use crate::model::{ChatMessage, Role};
use crate::tools::digest::is_id;

/// How much of a thread's history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept at most (more only when the latest user turn alone is longer).
    pub max_messages: usize,
    /// User turns, counted from the end, whose tool results stay whole.
    pub keep_tool_turns: usize,
    /// Tool results up to this many bytes are never compacted.
    pub compact_over_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_messages: 200,
            keep_tool_turns: 4,
            compact_over_bytes: 256,
        }
    }
}

/// Bounds and compacts `history` in place. It stays valid for the model: the kept part starts
/// at a user message, so no tool result loses its assistant call or the other way round.
pub fn bound_history(history: &mut Vec<ChatMessage>, limits: HistoryLimits) {
    let user_starts: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User)
        .map(|(i, _)| i)
        .collect();
    if history.len() > limits.max_messages {
        let earliest = history.len() - limits.max_messages;
        // The first turn start that keeps us under the bound, or the last turn whole.
        let cut = user_starts
            .iter()
            .copied()
            .find(|&i| i >= earliest)
            .or_else(|| user_starts.last().copied());
        if let Some(cut) = cut.filter(|&c| c > 0) {
            history.drain(..cut);
        }
    }
    let starts: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User)
        .map(|(i, _)| i)
        .collect();
    let Some(&boundary) = starts
        .len()
        .checked_sub(limits.keep_tool_turns.max(1))
        .and_then(|k| starts.get(k))
    else {
        return;
    };
    for message in &mut history[..boundary] {
        if message.role != Role::Tool {
            continue;
        }
        let Some(content) = &message.content else {
            continue;
        };
        if content.len() <= limits.compact_over_bytes || content.contains("\"compacted\":true") {
            continue;
        }
        let ids = ids_in(content);
        message.content = Some(json!({"compacted": true, "ids": ids}).to_string());
    }
}

/// Stripe-looking ids (`prefix_rest`) in a tool result, JSON or not, in order, once each.
fn ids_in(content: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        if !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    };
    match serde_json::from_str::<Value>(content) {
        Ok(value) => collect_ids(&value, &mut push),
        Err(_) => {
            for word in content.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if is_id(word) {
                    push(word);
                }
            }
        }
    }
    out
}

fn collect_ids(value: &Value, push: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) if is_id(s) => push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, push)),
        Value::Object(map) => map.values().for_each(|v| collect_ids(v, push)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ToolCall;

    fn turn(n: usize, big: bool) -> Vec<ChatMessage> {
        let mut call = ChatMessage::assistant("");
        call.content = None;
        call.tool_calls = vec![ToolCall {
            id: format!("c{n}"),
            name: "get_products".into(),
            arguments: "{}".into(),
        }];
        let body = if big {
            json!({"id": format!("prod_{n:08}"), "description": "x".repeat(400)}).to_string()
        } else {
            "{}".into()
        };
        vec![
            ChatMessage::user(format!("u{n}")),
            call,
            ChatMessage::tool_result(format!("c{n}"), body),
            ChatMessage::assistant(format!("a{n}")),
        ]
    }

    fn valid(history: &[ChatMessage]) -> bool {
        history.first().is_none_or(|m| m.role == Role::User)
            && history.iter().enumerate().all(|(i, m)| {
                m.role != Role::Tool
                    || history[..i].iter().any(|a| {
                        a.tool_calls
                            .iter()
                            .any(|c| Some(&c.id) == m.tool_call_id.as_ref())
                    })
            })
    }

    #[test]
    fn keeps_the_last_messages_on_turn_boundaries() {
        let mut history: Vec<ChatMessage> = (0..10).flat_map(|n| turn(n, false)).collect();
        let limits = HistoryLimits {
            max_messages: 10,
            ..HistoryLimits::default()
        };
        bound_history(&mut history, limits);
        assert_eq!(history.len(), 8, "two whole turns fit in 10");
        assert_eq!(history[0].content.as_deref(), Some("u8"));
        assert!(valid(&history));
    }

    #[test]
    fn old_tool_results_keep_only_their_ids() {
        let mut history: Vec<ChatMessage> = (0..6).flat_map(|n| turn(n, true)).collect();
        bound_history(&mut history, HistoryLimits::default());
        assert_eq!(history.len(), 24);
        let first = history[2].content.clone().unwrap();
        assert_eq!(first, r#"{"compacted":true,"ids":["prod_00000000"]}"#);
        assert!(
            history[22].content.as_deref().unwrap().len() > 400,
            "recent turns stay whole"
        );
        assert!(
            history[10].content.as_deref().unwrap().len() > 400,
            "the last 4 turns stay whole"
        );
        assert!(valid(&history));
        let again = history.clone();
        bound_history(&mut history, HistoryLimits::default());
        assert_eq!(history, again, "compaction is idempotent");
    }

    #[test]
    fn one_long_turn_is_kept_whole() {
        let mut history = vec![ChatMessage::user("go")];
        for n in 0..30 {
            history.extend(turn(n, false).into_iter().skip(1).take(2));
        }
        let before = history.len();
        bound_history(
            &mut history,
            HistoryLimits {
                max_messages: 5,
                ..HistoryLimits::default()
            },
        );
        assert_eq!(history.len(), before);
        assert!(valid(&history));
    }
}
