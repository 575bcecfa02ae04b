//! Altan's acknowledgements of sync plans and the [`PendingSyncs`] they update: a failed or
//! never-confirmed sync becomes an [`Inconsistency`] that asks a person to fix the database.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ledger::{Op, SyncPlan};

/// What Altan said about a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AckStatus {
    /// Altan wrote the plan to the database.
    Applied,
    /// Altan could not write it.
    Failed {
        /// Altan's words for why (`no reason given` when it gave none).
        reason: String,
    },
}

/// One acknowledgement read from a room message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The plan it is about (`sync_...`).
    pub sync_id: String,
    /// Applied or failed, with the reason.
    #[serde(flatten)]
    pub status: AckStatus,
}

const NO_REASON: &str = "no reason given";
/// Bounds the JSON scan on hostile input; real acknowledgements are short.
const MAX_JSON_ATTEMPTS: usize = 2_000;

/// Every JSON object written in a text, left to right, with its byte span: each `{` is tried
/// as the start of one, and an object found is skipped whole. At most `MAX_JSON_ATTEMPTS`
/// starts are tried, a bound on the work a text full of `{` can cause.
pub(super) fn json_objects_in(text: &str) -> Vec<(usize, usize, Value)> {
    let mut found = Vec::new();
    let mut at = 0;
    let mut attempts = 0;
    while let Some(offset) = text.get(at..).and_then(|rest| rest.find('{')) {
        let start = at + offset;
        attempts += 1;
        if attempts > MAX_JSON_ATTEMPTS {
            break;
        }
        let rest = text.get(start..).unwrap_or_default();
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                let end = start + stream.byte_offset();
                found.push((start, end, value));
                at = end.max(start + 1);
            }
            _ => at = start + 1,
        }
    }
    found
}

/// Reads every acknowledgement in a message: JSON objects (fenced or inline) with `sync_id`
/// and `status`, and plain text such as `sync_ab12 applied`, `sync_ab12 failed: table prices
/// missing` or `applied sync sync_ab12`. JSON wins over prose for the same id; for one id the
/// last statement wins. Never fails: what it cannot read it leaves out.
pub fn parse_acknowledgements(text: &str) -> Vec<Ack> {
    let mut json_acks: Vec<(usize, Ack)> = Vec::new();
    let mut prose = text.to_owned();
    for (start, end, value) in json_objects_in(text) {
        collect_json(&value, start, &mut json_acks);
        // Blank the JSON out of the prose scan; ASCII spaces keep byte offsets valid.
        if let Some(span) = prose.get_mut(start..end) {
            let blank = " ".repeat(span.len());
            prose.replace_range(start..end, &blank);
        }
    }
    let text_acks = prose_acks(&prose);

    let mut merged: BTreeMap<String, (usize, Ack, bool)> = BTreeMap::new();
    for (pos, ack, from_json) in json_acks
        .into_iter()
        .map(|(p, a)| (p, a, true))
        .chain(text_acks.into_iter().map(|(p, a)| (p, a, false)))
    {
        match merged.get_mut(&ack.sync_id) {
            Some(slot) if slot.2 && !from_json => {}
            Some(slot) => {
                let first = slot.0.min(pos);
                *slot = (first, ack, from_json);
            }
            None => {
                merged.insert(ack.sync_id.clone(), (pos, ack, from_json));
            }
        }
    }
    let mut out: Vec<(usize, Ack)> = merged.into_values().map(|(p, a, _)| (p, a)).collect();
    out.sort_by_key(|(p, _)| *p);
    out.into_iter().map(|(_, a)| a).collect()
}

fn collect_json(value: &Value, pos: usize, out: &mut Vec<(usize, Ack)>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_json(v, pos, out)),
        Value::Object(map) => {
            let id = map.get("sync_id").and_then(Value::as_str).map(str::trim);
            let status = map.get("status").and_then(Value::as_str);
            if let (Some(id), Some(status)) = (id, status)
                && is_sync_id(id)
            {
                let status = match classify(&status.to_lowercase()) {
                    Some(Verdict::Applied) => Some(AckStatus::Applied),
                    Some(Verdict::Failed) => Some(AckStatus::Failed {
                        reason: json_reason(map),
                    }),
                    None => None,
                };
                if let Some(status) = status {
                    out.push((
                        pos,
                        Ack {
                            sync_id: id.to_owned(),
                            status,
                        },
                    ));
                }
            }
            for (key, v) in map {
                if key != "operations" && (v.is_object() || v.is_array()) {
                    collect_json(v, pos, out);
                }
            }
        }
        _ => {}
    }
}

fn json_reason(map: &serde_json::Map<String, Value>) -> String {
    for key in ["error", "reason", "message", "detail"] {
        match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return s.trim().to_owned(),
            Some(Value::Object(o)) => {
                if let Some(m) = o.get("message").and_then(Value::as_str) {
                    return m.trim().to_owned();
                }
                return Value::Object(o.clone()).to_string();
            }
            _ => {}
        }
    }
    NO_REASON.to_owned()
}

fn is_sync_id(id: &str) -> bool {
    id.strip_prefix("sync_")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Applied,
    Failed,
}

/// One status word (already lower-case).
fn classify(word: &str) -> Option<Verdict> {
    match word.trim() {
        "applied" | "success" | "succeeded" | "successful" | "ok" | "done" | "completed"
        | "synced" => Some(Verdict::Applied),
        "failed" | "fail" | "failure" | "error" | "errors" | "errored" | "rejected" => {
            Some(Verdict::Failed)
        }
        _ => None,
    }
}

/// Sync ids in prose, with their byte ranges.
fn find_ids(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = line.get(from..).and_then(|r| r.find("sync_")) {
        let start = from + i;
        let boundary = start == 0
            || !bytes
                .get(start - 1)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let mut end = start + 5;
        while bytes.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            end += 1;
        }
        let trailing_ok = bytes.get(end).is_none_or(|b| *b != b'_');
        if boundary && end > start + 5 && trailing_ok {
            out.push((start, end));
        }
        from = end.max(start + 1);
    }
    out
}

/// Words of a text piece with their byte offsets, lower-cased.
fn words(piece: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in piece.char_indices() {
        let part = c.is_alphanumeric() || c == '\'' || c == '’';
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, piece.get(s..i).unwrap_or_default().to_lowercase()));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, piece.get(s..).unwrap_or_default().to_lowercase()));
    }
    out
}

/// The verdict words of a piece, in order, with a negated "applied" counted as a failure.
fn verdicts(piece: &str) -> Vec<(usize, usize, Verdict)> {
    let ws = words(piece);
    let mut out = Vec::new();
    for (i, (pos, word)) in ws.iter().enumerate() {
        let Some(mut verdict) = classify(word) else {
            continue;
        };
        let negated = ws[i.saturating_sub(2)..i].iter().any(|(_, w)| {
            matches!(
                w.as_str(),
                "not" | "never" | "cannot" | "unable" | "no" | "without"
            ) || w.ends_with("n't")
                || w.ends_with("n’t")
        });
        if negated {
            verdict = match verdict {
                Verdict::Applied => Verdict::Failed,
                Verdict::Failed => Verdict::Applied,
            };
        }
        out.push((*pos, pos + word.len(), verdict));
    }
    out
}

fn prose_acks(text: &str) -> Vec<(usize, Ack)> {
    let mut out = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let ids = find_ids(line);
        for (n, &(start, end)) in ids.iter().enumerate() {
            let sync_id = line.get(start..end).unwrap_or_default().to_owned();
            let before_from = if n == 0 { 0 } else { ids[n - 1].1 };
            let after_to = ids.get(n + 1).map_or(line.len(), |next| next.0);
            let after = line.get(end..after_to).unwrap_or_default();
            let before = line.get(before_from..start).unwrap_or_default();
            let verdict = match verdicts(after).first() {
                Some(&(_, word_end, v)) => Some((v, after.get(word_end..).unwrap_or_default())),
                None => verdicts(before).last().map(|&(_, _, v)| (v, after)),
            };
            let Some((verdict, tail)) = verdict else {
                continue;
            };
            let status = match verdict {
                Verdict::Applied => AckStatus::Applied,
                Verdict::Failed => AckStatus::Failed {
                    reason: prose_reason(after, tail),
                },
            };
            out.push((line_start + start, Ack { sync_id, status }));
        }
        line_start += line.len();
    }
    out
}

/// The reason of a prose failure: after a colon if there is one, else what follows the word.
fn prose_reason(after_id: &str, after_word: &str) -> String {
    let source = match after_id.split_once(':') {
        Some((_, r)) => r,
        None => after_word,
    };
    let trimmed = source
        .trim()
        .trim_start_matches([':', '-', '–', '—', ',', ';'])
        .trim()
        .trim_end_matches([',', ';', '.'])
        .trim();
    match trimmed.is_empty() {
        true => NO_REASON.to_owned(),
        false => trimmed.to_owned(),
    }
}

/// Where a sent sync stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SyncStatus {
    /// Sent, and Altan has not answered about it yet.
    Pending,
    /// Altan acknowledged it as applied.
    Applied,
    /// Altan acknowledged it as failed.
    Failed {
        /// Altan's words for why.
        reason: String,
    },
}

/// One row a plan touched, enough to tell a person what to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTarget {
    /// The mirror table.
    pub table: String,
    /// Upsert or delete.
    pub op: Op,
    /// The row's Stripe id.
    pub id: String,
}

/// A plan that was handed to Altan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentSync {
    /// The plan's id.
    pub sync_id: String,
    /// Every row the plan touches, in plan order.
    pub targets: Vec<SyncTarget>,
    /// What Altan last said about it.
    pub status: SyncStatus,
    /// Answers started since it was sent; pending after one means Altan never confirmed it.
    pub answers_since: u32,
    /// Already reported as an inconsistency in this status.
    pub reported: bool,
}

/// What [`PendingSyncs::apply`] did with a message's acknowledgements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckReport {
    /// Ids of sent plans the acknowledgements were applied to, in message order.
    pub updated: Vec<String>,
    /// Ids this session never sent; ignored.
    pub unknown: Vec<String>,
}

/// Why a sync needs a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckProblem {
    /// Altan reported that writing the plan failed.
    Failed {
        /// Altan's words for why.
        reason: String,
    },
    /// A later answer started and Altan never said whether it applied the plan.
    Unacknowledged,
}

/// A sync the database may not reflect, with a sentence for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistency {
    /// The plan's id.
    pub sync_id: String,
    /// Failed or never acknowledged.
    pub problem: AckProblem,
    /// The rows the database may lack, so a person knows what to check.
    pub targets: Vec<SyncTarget>,
    /// One sentence for the answer: which sync, what happened, which rows to fix.
    pub message: String,
}

/// Every plan sent in this session and what Altan said about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSyncs {
    syncs: Vec<SentSync>,
}

impl PendingSyncs {
    /// No plan sent yet.
    pub fn new() -> PendingSyncs {
        PendingSyncs::default()
    }

    /// Records a plan handed to Altan; sending the same plan again starts it over.
    pub fn sent(&mut self, plan: &SyncPlan) {
        let targets = plan
            .operations()
            .iter()
            .map(|o| SyncTarget {
                table: o.table.clone(),
                op: o.op(),
                id: o.id.clone(),
            })
            .collect();
        let entry = SentSync {
            sync_id: plan.sync_id().to_owned(),
            targets,
            status: SyncStatus::Pending,
            answers_since: 0,
            reported: false,
        };
        match self.syncs.iter_mut().find(|s| s.sync_id == plan.sync_id()) {
            Some(existing) => *existing = entry,
            None => self.syncs.push(entry),
        }
    }

    /// Applies acknowledgements; ids never sent are returned, not applied.
    pub fn apply(&mut self, acks: &[Ack]) -> AckReport {
        let mut report = AckReport::default();
        for ack in acks {
            let Some(sync) = self.syncs.iter_mut().find(|s| s.sync_id == ack.sync_id) else {
                report.unknown.push(ack.sync_id.clone());
                continue;
            };
            let status = match &ack.status {
                AckStatus::Applied => SyncStatus::Applied,
                AckStatus::Failed { reason } => SyncStatus::Failed {
                    reason: reason.clone(),
                },
            };
            if sync.status != status {
                sync.status = status;
                sync.reported = false;
            }
            report.updated.push(ack.sync_id.clone());
        }
        report
    }

    /// Call when a new answer starts (after applying the new messages' acknowledgements):
    /// syncs still pending from earlier answers become unacknowledged.
    pub fn answer_started(&mut self) {
        for sync in &mut self.syncs {
            if sync.status == SyncStatus::Pending {
                sync.answers_since = sync.answers_since.saturating_add(1);
            }
        }
    }

    /// The plan sent under `sync_id`, if this session sent it.
    pub fn get(&self, sync_id: &str) -> Option<&SentSync> {
        self.syncs.iter().find(|s| s.sync_id == sync_id)
    }

    /// Every plan sent, in the order first sent.
    pub fn all(&self) -> &[SentSync] {
        &self.syncs
    }

    /// Failed syncs and syncs still pending after a later answer started, not yet reported.
    pub fn inconsistencies(&self) -> Vec<Inconsistency> {
        self.syncs
            .iter()
            .filter(|s| !s.reported)
            .filter_map(|s| {
                let problem = match &s.status {
                    SyncStatus::Failed { reason } => AckProblem::Failed {
                        reason: reason.clone(),
                    },
                    SyncStatus::Pending if s.answers_since > 0 => AckProblem::Unacknowledged,
                    _ => return None,
                };
                Some(Inconsistency {
                    message: inconsistency_message(&s.sync_id, &problem, &s.targets),
                    sync_id: s.sync_id.clone(),
                    problem,
                    targets: s.targets.clone(),
                })
            })
            .collect()
    }

    /// Marks syncs as reported so the next answer does not repeat them; a new
    /// acknowledgement that changes their status makes them reportable again.
    pub fn mark_reported<'a>(&mut self, sync_ids: impl IntoIterator<Item = &'a str>) {
        for id in sync_ids {
            if let Some(sync) = self.syncs.iter_mut().find(|s| s.sync_id == id) {
                sync.reported = true;
            }
        }
    }
}

/// At most this many ids per table and operation in a sentence.
const MAX_IDS_LISTED: usize = 10;

fn describe_targets(targets: &[SyncTarget]) -> String {
    let mut groups: Vec<((Op, &str), Vec<&str>)> = Vec::new();
    for t in targets {
        match groups
            .iter_mut()
            .find(|(k, _)| *k == (t.op, t.table.as_str()))
        {
            Some((_, ids)) => ids.push(&t.id),
            None => groups.push(((t.op, &t.table), vec![&t.id])),
        }
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|((op, table), ids)| {
            let shown: Vec<&str> = ids.iter().take(MAX_IDS_LISTED).copied().collect();
            let more = ids.len().saturating_sub(MAX_IDS_LISTED);
            let mut list = shown.join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            format!("{} {table} {list}", op.as_str())
        })
        .collect();
    parts.join("; ")
}

fn inconsistency_message(sync_id: &str, problem: &AckProblem, targets: &[SyncTarget]) -> String {
    let rows = describe_targets(targets);
    match problem {
        AckProblem::Failed { reason } => format!(
            "Sync {sync_id} failed in the database ({reason}), so the database does not match Stripe; manual intervention is needed to {rows}."
        ),
        AckProblem::Unacknowledged => format!(
            "Sync {sync_id} was never confirmed, so the database may not match Stripe; manual intervention is needed to check and if needed {rows}."
        ),
    }
}
