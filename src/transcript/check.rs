//! Judging a run against its transcript: the model requests, the Pay requests and the outcome
//! of each turn. Every finding says where (turn, model call, field) and what differed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::format::{Expect, NoPlan, PayExchange, PlanExpect, Rule};
use super::outcome::TurnRun;
use crate::sync::contains_thanks;

/// Where in a turn a finding was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The k-th model call of the turn (1-based).
    Model(usize),
    /// The Pay requests made by the tool calls of model call k (0: before the first).
    Pay(usize),
    /// The turn's outcome: the answer, the tool calls, the plan, the Stripe state.
    Outcome,
}

/// One difference between the recording and the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 0-based; shown 1-based.
    pub turn: usize,
    /// Where in the turn.
    pub stage: Stage,
    /// What differs, e.g. `request.messages[3].content`; the whole text of a message finding.
    pub field: String,
    /// The recorded (or expected) value; `None` for a message finding.
    pub expected: Option<String>,
    /// The value the run produced; `None` for a message finding.
    pub got: Option<String>,
}

impl Finding {
    /// A difference: `field` was `expected` and the run gave `got`.
    pub fn diff(
        turn: usize,
        stage: Stage,
        field: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Finding {
        Finding {
            turn,
            stage,
            field: field.into(),
            expected: Some(expected.into()),
            got: Some(got.into()),
        }
    }

    /// A finding that is a sentence, not a comparison.
    pub fn message(turn: usize, stage: Stage, text: impl Into<String>) -> Finding {
        Finding {
            turn,
            stage,
            field: text.into(),
            expected: None,
            got: None,
        }
    }

    /// Sorts findings in the order things happen in a turn.
    pub fn order(&self) -> (usize, usize) {
        let at = match self.stage {
            Stage::Model(k) => 2 * k,
            Stage::Pay(k) => 2 * k + 1,
            Stage::Outcome => usize::MAX,
        };
        (self.turn, at)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "turn {}, ", self.turn + 1)?;
        match self.stage {
            Stage::Model(k) => write!(f, "model call {k}")?,
            Stage::Pay(0) => write!(f, "Pay requests before the first model call")?,
            Stage::Pay(k) => write!(f, "Pay requests after model call {k}")?,
            Stage::Outcome => write!(f, "outcome")?,
        }
        write!(f, ": {}", self.field)?;
        if let (Some(e), Some(g)) = (&self.expected, &self.got) {
            write!(f, ": expected {e}, got {g}")?;
        }
        Ok(())
    }
}

const SHOW_LEN: usize = 160;

/// A value as shown in a finding: compact JSON, cut to a readable length.
pub fn show(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    cut(&text)
}

fn cut(text: &str) -> String {
    if text.chars().count() <= SHOW_LEN {
        return text.to_string();
    }
    let short: String = text.chars().take(SHOW_LEN).collect();
    format!("{short}…")
}

/// Approval ids are random per run; they are compared as `appr_*`.
pub(crate) fn mask_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("appr_") {
        out.push_str(&rest[..pos + 5]);
        rest = &rest[pos + 5..];
        let hex = rest
            .char_indices()
            .take_while(|(_, c)| c.is_ascii_hexdigit())
            .count();
        if hex >= 16 {
            out.push('*');
            rest = &rest[hex..];
        }
    }
    out.push_str(rest);
    out
}

/// A value as compared: approval ids masked, and the items of a Stripe list sorted by id.
/// Objects written by concurrent tool calls commit in arrival order and share the sandbox's
/// fixed `created`, so the order of such a list is not part of the behaviour.
pub(crate) fn mask(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask_text(s)),
        Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
        Value::Object(map) => {
            let mut out: Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), mask(v))).collect();
            if out.get("object").and_then(Value::as_str) == Some("list")
                && let Some(Value::Array(items)) = out.get_mut("data")
            {
                items.sort_by(|a, b| str_at(a, "id").cmp(str_at(b, "id")));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The first difference between two JSON values: (path, expected, got).
pub(crate) fn json_diff(
    path: &str,
    expected: &Value,
    got: &Value,
) -> Option<(String, String, String)> {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            let keys: BTreeSet<&String> = e.keys().chain(g.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (e.get(key), g.get(key)) {
                    (Some(a), Some(b)) => {
                        if let Some(d) = json_diff(&sub, a, b) {
                            return Some(d);
                        }
                    }
                    (Some(a), None) => return Some((sub, show(a), "(absent)".into())),
                    (None, Some(b)) => return Some((sub, "(absent)".into(), show(b))),
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(e), Value::Array(g)) => {
            for (i, (a, b)) in e.iter().zip(g).enumerate() {
                if let Some(d) = json_diff(&format!("{path}[{i}]"), a, b) {
                    return Some(d);
                }
            }
            (e.len() != g.len()).then(|| {
                (
                    path.to_string(),
                    format!("{} items", e.len()),
                    format!("{} items", g.len()),
                )
            })
        }
        (a, b) if a == b => None,
        // 2000 and 2000.0 are the same amount.
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) => Some((path.to_string(), show(a), show(b))),
    }
}

/// Text that may hold JSON (tool results, arguments): compared as JSON when both parse.
fn text_diff(path: &str, expected: &str, got: &str) -> Option<(String, String, String)> {
    match (
        serde_json::from_str::<Value>(expected),
        serde_json::from_str::<Value>(got),
    ) {
        (Ok(e), Ok(g)) if e.is_object() || e.is_array() => json_diff(path, &mask(&e), &mask(&g)),
        _ => {
            let (e, g) = (mask_text(expected), mask_text(got));
            (e != g).then(|| {
                (
                    path.to_string(),
                    show_text_diff(&e, &g).0,
                    show_text_diff(&e, &g).1,
                )
            })
        }
    }
}

/// Two texts from where they start to differ.
fn show_text_diff(expected: &str, got: &str) -> (String, String) {
    let common = expected
        .char_indices()
        .zip(got.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    let start = expected[..common]
        .char_indices()
        .rev()
        .nth(30)
        .map_or(0, |(i, _)| i);
    let prefix = if start > 0 { "…" } else { "" };
    (
        format!("{prefix}{:?}", cut(&expected[start..])),
        format!("{prefix}{:?}", cut(got.get(start..).unwrap_or(got))),
    )
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Compares the engine's model request with the recorded one. What counts (see
/// docs/transcripts.md): the messages after the system messages (count and roles), every
/// assistant tool call (id, name, arguments as JSON), every tool result's `tool_call_id`, the
/// content of the messages after the last assistant message (the new room messages or tool
/// results, JSON-compared, approval ids masked), and that every tool the recorded response
/// calls is offered. The model name, temperature, stream flags, the system prompt, the context
/// message and the tool schemas' text are not compared.
pub(crate) fn compare_request(
    expected: &Value,
    got: &Value,
    called: &[String],
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let empty = Vec::new();
    let em = expected
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let Some(gm) = got.get("messages").and_then(Value::as_array) else {
        out.push(("messages".into(), "an array".into(), "none".into()));
        return out;
    };
    let system = |m: &[Value]| {
        m.iter()
            .take_while(|x| str_at(x, "role") == "system")
            .count()
    };
    let (es, gs) = (system(em), system(gm));
    let (ne, ng) = (em.len() - es, gm.len() - gs);
    if ne != ng {
        out.push((
            "messages".into(),
            format!("{ne} messages after the system prompt"),
            format!("{ng}"),
        ));
    }
    let last_assistant = em[es..]
        .iter()
        .rposition(|m| str_at(m, "role") == "assistant");
    for i in 0..ne.min(ng) {
        let (e, g) = (&em[es + i], &gm[gs + i]);
        let at = format!("messages[{}]", gs + i);
        let role = str_at(e, "role");
        if role != str_at(g, "role") {
            out.push((
                format!("{at}.role"),
                format!("{role:?}"),
                format!("{:?}", str_at(g, "role")),
            ));
            continue;
        }
        if role == "assistant" {
            let none = Vec::new();
            let ec = e
                .get("tool_calls")
                .and_then(Value::as_array)
                .unwrap_or(&none);
            let gc = g
                .get("tool_calls")
                .and_then(Value::as_array)
                .unwrap_or(&none);
            if ec.len() != gc.len() {
                out.push((
                    format!("{at}.tool_calls"),
                    format!("{} calls", ec.len()),
                    format!("{} calls", gc.len()),
                ));
            }
            for (j, (a, b)) in ec.iter().zip(gc).enumerate() {
                let cat = format!("{at}.tool_calls[{j}]");
                for key in ["id"] {
                    if str_at(a, key) != str_at(b, key) {
                        out.push((
                            format!("{cat}.{key}"),
                            format!("{:?}", str_at(a, key)),
                            format!("{:?}", str_at(b, key)),
                        ));
                    }
                }
                let f = |v: &Value, k: &str| {
                    v.pointer(&format!("/function/{k}"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                if f(a, "name") != f(b, "name") {
                    out.push((
                        format!("{cat}.function.name"),
                        format!("{:?}", f(a, "name")),
                        format!("{:?}", f(b, "name")),
                    ));
                }
                if let Some(d) = text_diff(
                    &format!("{cat}.function.arguments"),
                    &f(a, "arguments"),
                    &f(b, "arguments"),
                ) {
                    out.push(d);
                }
            }
        }
        if role == "tool" && str_at(e, "tool_call_id") != str_at(g, "tool_call_id") {
            out.push((
                format!("{at}.tool_call_id"),
                format!("{:?}", str_at(e, "tool_call_id")),
                format!("{:?}", str_at(g, "tool_call_id")),
            ));
        }
        if last_assistant.is_none_or(|la| i > la)
            && let Some(d) = text_diff(
                &format!("{at}.content"),
                str_at(e, "content"),
                str_at(g, "content"),
            )
        {
            out.push(d);
        }
    }
    let offered: Vec<&str> = got
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    for name in called {
        if !offered.contains(&name.as_str()) {
            out.push((
                "tools".into(),
                format!("`{name}` offered (the recorded response calls it)"),
                "not offered".into(),
            ));
        }
    }
    out
}

fn exchange_key(e: &PayExchange) -> String {
    format!(
        "{} {} {} {}",
        e.method,
        e.path,
        crate::sync::canonical_json(&mask(e.body.as_ref().unwrap_or(&Value::Null))),
        e.status
    )
}

fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// Compares a turn's Pay requests with the recording: per model call, as a multiset of
/// (method, path and query, body, status), since tool calls of one answer run concurrently.
pub(crate) fn compare_pay(
    turn: usize,
    expected: &[PayExchange],
    got: &[PayExchange],
) -> Vec<Finding> {
    let mut groups: BTreeMap<usize, (Vec<&PayExchange>, Vec<&PayExchange>)> = BTreeMap::new();
    for e in expected {
        groups.entry(e.model_call).or_default().0.push(e);
    }
    for g in got {
        groups.entry(g.model_call).or_default().1.push(g);
    }
    let mut out = Vec::new();
    for (k, (mut exp, mut got)) in groups {
        // Identical requests first, whatever their order.
        exp.retain(|e| {
            let key = exchange_key(e);
            match got.iter().position(|g| exchange_key(g) == key) {
                Some(p) => {
                    got.remove(p);
                    false
                }
                None => true,
            }
        });
        let stage = Stage::Pay(k);
        for e in exp {
            let partner = got
                .iter()
                .position(|g| g.method == e.method && g.path == e.path)
                .or_else(|| {
                    got.iter().position(|g| {
                        g.method == e.method && path_only(&g.path) == path_only(&e.path)
                    })
                })
                .or_else(|| got.iter().position(|g| g.method == e.method));
            let Some(p) = partner else {
                out.push(Finding::diff(
                    turn,
                    stage,
                    format!("{} {}", e.method, e.path),
                    "this request",
                    "no such request",
                ));
                continue;
            };
            let g = got.remove(p);
            let at = format!("{} {}", e.method, path_only(&e.path));
            if e.path != g.path {
                out.push(Finding::diff(
                    turn,
                    stage,
                    format!("{at}: path"),
                    format!("{:?}", e.path),
                    format!("{:?}", g.path),
                ));
            }
            let (eb, gb) = (
                mask(e.body.as_ref().unwrap_or(&Value::Null)),
                mask(g.body.as_ref().unwrap_or(&Value::Null)),
            );
            if let Some((field, a, b)) = json_diff("body", &eb, &gb) {
                out.push(Finding::diff(turn, stage, format!("{at}: {field}"), a, b));
            }
            if e.status != g.status {
                out.push(Finding::diff(
                    turn,
                    stage,
                    format!("{at}: status"),
                    e.status.to_string(),
                    g.status.to_string(),
                ));
            }
        }
        for g in got {
            out.push(Finding::diff(
                turn,
                stage,
                format!("{} {}", g.method, g.path),
                "no such request",
                "this request",
            ));
        }
    }
    out
}

/// Mentions in a text: `[@Name](/member/..)` links plus bare `@Name` handles (an email's `@`
/// follows a letter, so it is not one).
pub(crate) fn mention_count(text: &str) -> usize {
    let links = text.matches("](/member/").count();
    let chars: Vec<char> = text.chars().collect();
    let bare = chars
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            **c == '@'
                && (*i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '['))
                && chars.get(i + 1).is_some_and(|n| n.is_alphabetic())
        })
        .count();
    links + bare
}

/// The database table a Stripe object syncs to (the default mapping).
fn table_of(object: &str) -> Option<&'static str> {
    Some(match object {
        "product" => "products",
        "price" => "prices",
        "customer" => "customers",
        "subscription" => "subscriptions",
        "coupon" => "coupons",
        "promotion_code" => "promotion_codes",
        _ => return None,
    })
}

/// What a dotted path (`recurring.interval`, `items.data.0.price.id`) holds in an object.
pub(crate) fn field_at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = object;
    for part in path.split('.') {
        at = match at {
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            other => other.get(part)?,
        };
    }
    Some(at)
}

/// How strictly ids are compared: a replay has the recorded ids; a live run (eval) makes new
/// ones, so ids that were not in the initial state match any new id.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ids<'a> {
    /// Every id must be the recorded one (replay).
    Exact,
    /// Ids in this set (the initial state's) must match; any other id matches any new one.
    NewAreAny(&'a BTreeSet<String>),
}

impl Ids<'_> {
    fn id(&self, id: &str) -> String {
        match self {
            Ids::Exact => id.to_string(),
            Ids::NewAreAny(seeded) if seeded.contains(id) => id.to_string(),
            Ids::NewAreAny(_) => "<new>".into(),
        }
    }

    fn strict(&self) -> bool {
        matches!(self, Ids::Exact)
    }
}

/// Checks one turn's outcome; returns (field, expected, got) for each failed check.
pub(crate) fn judge(expect: &Expect, run: &TurnRun, ids: Ids<'_>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Some(answer) = &run.answer else {
        out.push((
            "answer".into(),
            "an answer".into(),
            run.error.clone().unwrap_or_else(|| "none".into()),
        ));
        return out;
    };
    let text = answer.text.as_str();
    let a = &expect.answer;
    if ids.strict()
        && let Some(want) = &a.text
        && mask_text(want) != mask_text(text)
    {
        let (e, g) = show_text_diff(&mask_text(want), &mask_text(text));
        out.push(("answer.text".into(), e, g));
    }
    for needle in &a.contains {
        if !text.contains(needle.as_str()) {
            out.push((
                "answer.contains".into(),
                format!("{needle:?}"),
                format!("{:?}", cut(text)),
            ));
        }
    }
    for needle in &a.not_contains {
        if text.contains(needle.as_str()) {
            out.push((
                "answer.not_contains".into(),
                format!("no {needle:?}"),
                format!("{:?}", cut(text)),
            ));
        }
    }
    if let Some(end) = &a.ends_with
        && !text.trim_end().ends_with(end.trim_end())
    {
        let tail: String = text
            .trim_end()
            .chars()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        out.push((
            "answer.ends_with".into(),
            format!("{end:?}"),
            format!("…{tail:?}"),
        ));
    }
    if let Some(n) = a.mentions {
        let got = mention_count(text);
        if got != n {
            out.push(("answer.mentions".into(), n.to_string(), got.to_string()));
        }
    }
    if let Some(end) = &a.end {
        let got = serde_json::to_value(&answer.end)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if *end != got {
            out.push(("answer.end".into(), end.clone(), got));
        }
    }
    check_plan(expect, run, ids, &mut out);
    check_state(expect, run, ids, &mut out);
    if ids.strict() {
        for (id, want) in &expect.tool_errors {
            let got = match answer.tool_calls.iter().find(|c| c.id == *id) {
                None => "no such call".to_string(),
                Some(c) => match c.error {
                    None => "ok".to_string(),
                    Some(code) => serde_json::to_value(code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                },
            };
            if got != *want {
                out.push((format!("tool_errors.{id}"), want.clone(), got));
            }
        }
    }
    for rule in &expect.rules {
        if let Some(why) = check_rule(*rule, run) {
            let name = serde_json::to_value(rule)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            out.push((format!("rules.{name}"), "to hold".into(), why));
        }
    }
    out
}

fn check_plan(
    expect: &Expect,
    run: &TurnRun,
    ids: Ids<'_>,
    out: &mut Vec<(String, String, String)>,
) {
    let Some(want) = &expect.sync_plan else {
        return;
    };
    let plan = run.answer.as_ref().and_then(|a| a.sync_plan.as_ref());
    match (want, plan) {
        (PlanExpect::None(NoPlan::None), None) => {}
        (PlanExpect::None(NoPlan::None), Some(p)) => out.push((
            "sync_plan".into(),
            "none".into(),
            format!("{} operations", p.operations().len()),
        )),
        (PlanExpect::Plan { .. }, None) => {
            out.push(("sync_plan".into(), "a plan".into(), "none".into()))
        }
        (PlanExpect::Plan { operations }, Some(plan)) => {
            let got: Vec<(String, String, String, Value)> = plan
                .operations()
                .iter()
                .map(|o| {
                    let json = o.to_json();
                    (
                        o.table.clone(),
                        o.op().as_str().to_string(),
                        ids.id(&o.id),
                        json.get("row").cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            let show_ops = |ops: Vec<String>| ops.join(", ");
            let mut want_keys: Vec<String> = operations
                .iter()
                .map(|o| format!("{} {} {}", o.op, o.table, ids.id(&o.id)))
                .collect();
            let mut got_keys: Vec<String> = got
                .iter()
                .map(|(t, op, id, _)| format!("{op} {t} {id}"))
                .collect();
            if !ids.strict() {
                want_keys.sort();
                got_keys.sort();
            }
            if want_keys != got_keys {
                out.push((
                    "sync_plan.operations".into(),
                    format!("[{}]", show_ops(want_keys)),
                    format!("[{}]", show_ops(got_keys)),
                ));
                return;
            }
            if !ids.strict() {
                return;
            }
            for (i, (w, g)) in operations.iter().zip(&got).enumerate() {
                for (col, value) in w.row.iter().flatten() {
                    let have = g.3.get(col).cloned().unwrap_or(Value::Null);
                    if json_diff("", value, &have).is_some() {
                        out.push((
                            format!("sync_plan.operations[{i}].row.{col}"),
                            show(value),
                            show(&have),
                        ));
                    }
                }
            }
        }
    }
}

fn check_state(
    expect: &Expect,
    run: &TurnRun,
    ids: Ids<'_>,
    out: &mut Vec<(String, String, String)>,
) {
    let Some(kinds) = &expect.stripe else {
        return;
    };
    for (kind, want) in kinds {
        let Some(have) = run.state.get(kind) else {
            out.push((
                format!("stripe.{kind}"),
                "a known object kind".into(),
                "not read".into(),
            ));
            continue;
        };
        // Each object projected on the fields the expectation names, ids as `ids` says.
        let project = |obj: &Value, fields: &Map<String, Value>| -> Value {
            let mut m = Map::new();
            for key in fields.keys() {
                let v = field_at(obj, key).cloned().unwrap_or(Value::Null);
                let v = if key == "id" {
                    Value::String(ids.id(v.as_str().unwrap_or("")))
                } else {
                    v
                };
                m.insert(key.clone(), v);
            }
            Value::Object(m)
        };
        if ids.strict() {
            for w in want {
                let id = w.get("id").and_then(Value::as_str).unwrap_or("");
                match have.iter().find(|h| str_at(h, "id") == id) {
                    None => out.push((
                        format!("stripe.{kind}.{id}"),
                        "to exist".into(),
                        "absent".into(),
                    )),
                    Some(h) => {
                        let w_value = Value::Object(w.clone());
                        if let Some((field, a, b)) =
                            json_diff(&format!("stripe.{kind}.{id}"), &w_value, &project(h, w))
                        {
                            out.push((field, a, b));
                        }
                    }
                }
            }
            for h in have {
                let id = str_at(h, "id");
                if !want
                    .iter()
                    .any(|w| w.get("id").and_then(Value::as_str) == Some(id))
                {
                    out.push((
                        format!("stripe.{kind}.{id}"),
                        "no such object".into(),
                        "exists".into(),
                    ));
                }
            }
        } else {
            // Every field any expected object names; absent reads as null on both sides.
            let mut fields = Map::new();
            for w in want {
                for key in w.keys() {
                    fields.insert(key.clone(), Value::Null);
                }
            }
            let flat = |o: &Map<String, Value>| -> Value {
                let mut m = Map::new();
                for key in fields.keys() {
                    let v = o.get(key).cloned().unwrap_or(Value::Null);
                    let v = if key == "id" {
                        Value::String(ids.id(v.as_str().unwrap_or("")))
                    } else {
                        v
                    };
                    m.insert(key.clone(), v);
                }
                Value::Object(m)
            };
            let mut w: Vec<String> = want.iter().map(|o| flat(o).to_string()).collect();
            let mut h: Vec<String> = have
                .iter()
                .map(|o| project(o, &fields).to_string())
                .collect();
            w.sort();
            h.sort();
            if w != h {
                out.push((
                    format!("stripe.{kind}"),
                    cut(&format!("[{}]", w.join(", "))),
                    cut(&format!("[{}]", h.join(", "))),
                ));
            }
        }
    }
}

/// `None` when the rule holds, else why not.
fn check_rule(rule: Rule, run: &TurnRun) -> Option<String> {
    let answer = run.answer.as_ref()?;
    let text = &answer.text;
    match rule {
        Rule::HandoffToAltan => {
            let n = mention_count(text);
            let mention = answer.mention.as_ref();
            let ok = n == 1
                && mention.is_some_and(|m| {
                    m.name.eq_ignore_ascii_case("Altan") && text.trim_end().ends_with(&m.markup())
                });
            (!ok).then(|| format!("{n} mention(s), mention {:?}", mention.map(|m| m.markup())))
        }
        Rule::NoMention => {
            let n = mention_count(text);
            (n > 0 || answer.mention.is_some()).then(|| format!("{n} mention(s)"))
        }
        Rule::NoThanks => contains_thanks(text).then(|| "the answer thanks someone".to_string()),
        Rule::NoToolCalls => (!answer.tool_calls.is_empty())
            .then(|| format!("{} tool call(s)", answer.tool_calls.len())),
        Rule::NoPayRequests => {
            (!run.pay.is_empty()).then(|| format!("{} Pay request(s)", run.pay.len()))
        }
        Rule::PlanMatchesStripe => {
            let mut mutated = BTreeSet::new();
            for e in &run.pay {
                if (e.method == "POST" || e.method == "DELETE")
                    && e.status == 200
                    && let Some(table) = table_of(str_at(&e.response, "object"))
                {
                    mutated.insert(format!("{table} {}", str_at(&e.response, "id")));
                }
            }
            let planned: BTreeSet<String> = answer
                .sync_plan
                .iter()
                .flat_map(|p| p.operations())
                .map(|o| format!("{} {}", o.table, o.id))
                .collect();
            (mutated != planned).then(|| {
                format!(
                    "Stripe changed [{}] but the plan lists [{}]",
                    mutated.into_iter().collect::<Vec<_>>().join(", "),
                    planned.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
        }
        Rule::IdempotentRetries => {
            let mut by_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for e in &run.pay {
                if let Some(key) = e.headers.get("idempotency-key")
                    && e.status == 200
                {
                    by_key
                        .entry(key.as_str())
                        .or_default()
                        .insert(str_at(&e.response, "id"));
                }
            }
            by_key
                .iter()
                .find(|(_, ids)| ids.len() > 1)
                .map(|(key, ids)| format!("key {key} produced {ids:?}"))
        }
    }
}
