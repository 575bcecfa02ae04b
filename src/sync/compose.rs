//! The answer composer: the model's text cleaned of mentions and thank-yous, then the sync
//! plan, the inconsistencies and exactly one mention of Altan at the very end (or none).
//!
//! Nothing the model writes can be read as a plan: every code form in its text (fenced with
//! backticks or tildes, an inline code span, an indented block) that mentions `"sync_id"` or
//! `"operations"` is removed, and so is any JSON object in its prose with either key; an
//! unclosed fence is closed before the runtime's sections; and [`PLAN_MARKER`] is removed
//! wherever the model wrote it, so the runtime's block (opened by the line [`PLAN_FENCE`]) is
//! the only one an applier finds ([`plan_blocks`]).

use serde::{Deserialize, Serialize};

use super::ack::{Inconsistency, json_objects_in};
use super::ledger::SyncPlan;

/// A member of the room as the composer needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The display name (`Altan`, `Altan Pay`), as `@Name` shows it.
    pub name: String,
    /// The room's member id, for `[@Name](/member/<id>)`; unknown means plain `@Name`.
    pub member_id: Option<String>,
}

impl Member {
    /// A member with its display name and, when known, its room member id.
    pub fn new(name: impl Into<String>, member_id: Option<String>) -> Member {
        Member {
            name: name.into(),
            member_id,
        }
    }
}

/// Who is in the room: this agent, Altan, and everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// This agent; the answer never mentions it.
    pub me: Member,
    /// The orchestrator the answer hands over to; its member id makes the mention a link.
    pub altan: Member,
    /// Everyone else; mentions of them in the model's text are removed like any other.
    pub others: Vec<Member>,
}

impl Default for Room {
    fn default() -> Room {
        Room {
            me: Member::new("Altan Pay", None),
            altan: Member::new(ALTAN, None),
            others: Vec::new(),
        }
    }
}

const ALTAN: &str = "Altan";

/// The word that marks the runtime's plan block. The composer removes it from the model's text
/// (in any letter case), so only the runtime's own block carries it.
pub const PLAN_MARKER: &str = "altan-pay-sync-plan";

/// The line that opens the runtime's plan block: a fence whose info string is `json` and
/// [`PLAN_MARKER`]. The block ends at the next line that is exactly ```.
pub const PLAN_FENCE: &str = "```json altan-pay-sync-plan";

/// The line that closes the runtime's plan block.
const PLAN_FENCE_END: &str = "```";

/// Why an answer's plan blocks cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanBlockError {
    /// A [`PLAN_FENCE`] line opens a block that no later line closes.
    #[error("the plan block opened on line {line} (`{PLAN_FENCE}`) is never closed with ```")]
    Unclosed {
        /// 1-based line of the opening fence.
        line: usize,
    },
}

/// The bodies of the runtime's plan blocks in an answer: what lies between a line that is
/// exactly [`PLAN_FENCE`] and the next line that is exactly ```. Other code blocks, fenced or
/// inline, are never read.
pub fn plan_blocks(text: &str) -> Result<Vec<&str>, PlanBlockError> {
    let mut blocks = Vec::new();
    // (line number of the opening fence, byte offset where its body starts)
    let mut open: Option<(usize, usize)> = None;
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end();
        match open {
            None if bare == PLAN_FENCE => open = Some((n + 1, offset + line.len())),
            Some((_, start)) if bare == PLAN_FENCE_END => {
                blocks.push(text.get(start..offset).unwrap_or_default());
                open = None;
            }
            _ => {}
        }
        offset += line.len();
    }
    match open {
        Some((line, _)) => Err(PlanBlockError::Unclosed { line }),
        None => Ok(blocks),
    }
}

/// Everything the final answer is made of.
#[derive(Debug, Clone, Copy)]
pub struct AnswerInput<'a> {
    /// The model's final text, as written.
    pub model_text: &'a str,
    /// The turn's signed plan, when Stripe changed; it goes in the runtime's plan block.
    pub plan: Option<&'a SyncPlan>,
    /// Syncs the database may not reflect; each gets a line asking a person to check it.
    pub inconsistencies: &'a [Inconsistency],
    /// Who is in the room: whom to mention, and whose mentions to remove.
    pub room: &'a Room,
    /// Agents have been answering each other with no person in between: mention nobody.
    pub agents_bouncing: bool,
    /// The model's text ended at its output limit: the answer says it was cut.
    pub cut: bool,
}

/// What an answer whose model text was cut at the output limit says, after that text (any
/// code block the text left open is closed first).
pub const CUT_NOTE: &str =
    "(My answer was cut off here: it reached the model's output limit before it was finished.)";

/// The one mention an answer ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    /// The name after `@` (Altan's display name in the room).
    pub name: String,
    /// Altan's member id; `None` makes the mention plain `@Name`.
    pub member_id: Option<String>,
}

impl Mention {
    /// `[@Altan](/member/<id>)`, or `@Altan` without an id.
    pub fn markup(&self) -> String {
        match &self.member_id {
            Some(id) => format!("[@{}](/member/{id})", self.name),
            None => format!("@{}", self.name),
        }
    }
}

/// The answer as posted to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedAnswer {
    /// The whole answer as posted, the mention (if any) at its very end.
    pub text: String,
    /// The mention the text ends with; `None` when agents were bouncing.
    pub mention: Option<Mention>,
    /// What was taken out of the model's text (mentions, thank-you sentences, its own sync block).
    pub removed: Vec<String>,
}

/// Composes the final answer; whatever the model wrote, the rules of the room hold.
pub fn compose_answer(input: AnswerInput<'_>) -> ComposedAnswer {
    let mut removed = Vec::new();
    let cleaned = clean_model_text(input.model_text, input.room, &mut removed);

    let mut sections: Vec<String> = Vec::new();
    if !cleaned.is_empty() {
        sections.push(cleaned);
    }
    if input.cut {
        sections.push(CUT_NOTE.to_owned());
    }
    if let Some(plan) = input.plan {
        let count = plan.operations().len();
        let noun = if count == 1 { "change" } else { "changes" };
        let mut list = format!("Database sync {} ({count} {noun}):", plan.sync_id());
        for op in plan.operations() {
            list.push_str("\n- ");
            list.push_str(&one_line(&op.summary()));
        }
        sections.push(list);
        sections.push(format!(
            "{PLAN_FENCE}\n{}\n{PLAN_FENCE_END}",
            plan.to_json_text()
        ));
    }
    if !input.inconsistencies.is_empty() {
        let mut block = String::from("Needs manual intervention:");
        for inc in input.inconsistencies {
            block.push_str("\n- ");
            block.push_str(&one_line(&inc.message));
        }
        sections.push(block);
    }

    let altan_name = match input.room.altan.name.trim() {
        "" => ALTAN.to_owned(),
        name => name.to_owned(),
    };
    let mention = (!input.agents_bouncing).then(|| Mention {
        name: altan_name.clone(),
        member_id: input.room.altan.member_id.clone(),
    });
    let closing = match (&mention, input.plan) {
        (None, Some(plan)) => format!(
            "The agents in this room were going back and forth with no one else stepping in, so I stopped and did not hand over to another agent. To finish, please ask {altan_name} to apply sync {} to the database (the rows are listed above), or tell me how to continue.",
            plan.sync_id()
        ),
        (None, None) => "The agents in this room were going back and forth with no one else stepping in, so I stopped and did not hand over to another agent. Please tell me how you would like to continue.".to_owned(),
        (Some(m), Some(plan)) => format!(
            "Please apply sync {} to the database and reply with its status. {}",
            plan.sync_id(),
            m.markup()
        ),
        (Some(m), None) if !input.inconsistencies.is_empty() => format!(
            "Nothing changed in Stripe in this answer; please check the syncs above. {}",
            m.markup()
        ),
        (Some(m), None) => format!(
            "Nothing changed in Stripe, so there is nothing to write to the database. {}",
            m.markup()
        ),
    };
    sections.push(closing);

    ComposedAnswer {
        text: sections.join("\n\n"),
        mention,
        removed,
    }
}

/// How many agent messages in a row, with no person in between, count as agents bouncing.
pub const DEFAULT_BOUNCE_THRESHOLD: usize = 4;

pub use crate::room::{MemberKind, RoomMessage};

/// Whether the newest `threshold` messages are all from agents (no person stepped in).
pub fn detect_agents_bouncing(trail: &[RoomMessage], threshold: usize) -> bool {
    if threshold == 0 || trail.len() < threshold {
        return false;
    }
    trail
        .iter()
        .rev()
        .take(threshold)
        .all(|m| m.kind == MemberKind::Agent)
}

/// The model's text without mentions, thank-yous or a sync block of its own, tidied.
fn clean_model_text(text: &str, room: &Room, removed: &mut Vec<String>) -> String {
    let mut names: Vec<&str> = std::iter::once(room.me.name.as_str())
        .chain(std::iter::once(room.altan.name.as_str()))
        .chain(std::iter::once(ALTAN))
        .chain(room.others.iter().map(|m| m.name.as_str()))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names.dedup();

    let text = without_marker(text, removed);
    let mut out = String::new();
    for segment in segments(&text) {
        match segment {
            Segment::Code(code) => {
                if looks_like_plan(&code) {
                    removed.push(code.trim().to_owned());
                    continue;
                }
                let code = strip_links(&code, removed);
                out.push_str(&strip_names(&code, &names, removed));
            }
            Segment::Prose(prose) => {
                let prose = without_plan_spans(&prose, removed);
                let prose = without_plan_json(&prose, removed);
                for line in prose.split_inclusive('\n') {
                    let (body, newline) = match line.strip_suffix('\n') {
                        Some(b) => (b, "\n"),
                        None => (line, ""),
                    };
                    let mut cleaned = strip_links(body, removed);
                    cleaned = strip_names(&cleaned, &names, removed);
                    cleaned = strip_handles(&cleaned, removed);
                    cleaned = strip_thanks(&cleaned, removed);
                    if cleaned != body {
                        match tidy_line(&cleaned) {
                            Some(tidy) => out.push_str(&tidy),
                            None if newline.is_empty() => {}
                            None => continue,
                        }
                    } else {
                        out.push_str(body);
                    }
                    out.push_str(newline);
                }
            }
        }
    }
    collapse_blank_lines(&out)
}

enum Segment {
    Prose(String),
    Code(String),
}

/// Whether a piece of the model's text mentions what only a plan holds.
fn looks_like_plan(text: &str) -> bool {
    text.contains("\"sync_id\"") || text.contains("\"operations\"")
}

/// The text without [`PLAN_MARKER`] in any letter case (removed until none is left, so the
/// pieces around one cannot join into another).
fn without_marker(text: &str, removed: &mut Vec<String>) -> String {
    let mut text = text.to_owned();
    // ASCII lowercasing keeps byte offsets, so a match in `lower` is one in `text`.
    while let Some(at) = text.to_ascii_lowercase().find(PLAN_MARKER) {
        removed.push(
            text.get(at..at + PLAN_MARKER.len())
                .unwrap_or_default()
                .to_owned(),
        );
        text.replace_range(at..at + PLAN_MARKER.len(), "");
    }
    text
}

/// Outside text in the runtime's own sections (a Stripe label the model may have chosen,
/// Altan's error text) on one line and without [`PLAN_MARKER`], so it can neither open a plan
/// block nor end the list it is in.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    without_marker(&flat, &mut Vec::new())
}

/// A fence line: up to three spaces, then three or more backticks or tildes. The character
/// and the run's length.
fn fence_of(line: &str) -> Option<(char, usize)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = line.get(indent..)?;
    let c = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let run = rest.len() - rest.trim_start_matches(c).len();
    (run >= 3).then_some((c, run))
}

/// Whether a line closes a fence of `c` opened with `run` characters: at least as many, and
/// nothing after them.
fn closes(line: &str, (c, run): (char, usize)) -> bool {
    fence_of(line).is_some_and(|(lc, lrun)| {
        let rest = line.trim().trim_start_matches(lc);
        lc == c && lrun >= run && rest.is_empty()
    })
}

/// A line of an indented code block: four spaces or a tab, then something.
fn is_indented_code(line: &str) -> bool {
    (line.starts_with("    ") || line.starts_with('\t')) && !line.trim().is_empty()
}

/// Splits at fences (``` or ~~~) and indented code blocks; an unclosed fence is closed at the
/// end, so nothing after the model's text falls inside it.
fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut fence: Option<(char, usize)> = None;
    let mut indented = false;
    let mut after_blank = true;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if let Some(open) = fence {
            current.push_str(line);
            if closes(bare, open) {
                out.push(Segment::Code(std::mem::take(&mut current)));
                fence = None;
            }
            continue;
        }
        if indented && !is_indented_code(bare) && !bare.trim().is_empty() {
            out.push(Segment::Code(std::mem::take(&mut current)));
            indented = false;
        }
        if !indented {
            if let Some(open) = fence_of(bare) {
                if !current.is_empty() {
                    out.push(Segment::Prose(std::mem::take(&mut current)));
                }
                fence = Some(open);
            } else if after_blank && is_indented_code(bare) {
                if !current.is_empty() {
                    out.push(Segment::Prose(std::mem::take(&mut current)));
                }
                indented = true;
            }
        }
        current.push_str(line);
        after_blank = bare.trim().is_empty();
    }
    if let Some((c, run)) = fence {
        if !current.ends_with('\n') {
            current.push('\n');
        }
        current.extend(std::iter::repeat_n(c, run));
        current.push('\n');
    }
    if !current.is_empty() {
        out.push(match fence.is_some() || indented {
            true => Segment::Code(current),
            false => Segment::Prose(current),
        });
    }
    out
}

/// Prose without the inline code spans (a run of backticks to the next run of the same
/// length) that look like a plan.
fn without_plan_spans(prose: &str, removed: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(prose.len());
    let mut rest = prose;
    while let Some(open) = rest.find('`') {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        let run = from.len() - from.trim_start_matches('`').len();
        let ticks = from.get(..run).unwrap_or_default();
        let body = from.get(run..).unwrap_or_default();
        let close = find_run(body, run);
        match close {
            Some(end) if looks_like_plan(body.get(..end).unwrap_or_default()) => {
                let span_end = run + end + run;
                removed.push(from.get(..span_end).unwrap_or_default().to_owned());
                rest = from.get(span_end..).unwrap_or_default();
            }
            Some(end) => {
                let span_end = run + end + run;
                out.push_str(from.get(..span_end).unwrap_or_default());
                rest = from.get(span_end..).unwrap_or_default();
            }
            None => {
                out.push_str(ticks);
                rest = body;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The byte offset of the next run of exactly `len` backticks.
fn find_run(text: &str, len: usize) -> Option<usize> {
    let mut at = 0;
    while let Some(off) = text.get(at..).and_then(|r| r.find('`')) {
        let start = at + off;
        let tail = text.get(start..).unwrap_or_default();
        let run = tail.len() - tail.trim_start_matches('`').len();
        if run == len {
            return Some(start);
        }
        at = start + run;
    }
    None
}

/// Prose without the JSON objects in it that hold a plan (an object with a `sync_id` or
/// `operations` key, at any depth).
fn without_plan_json(prose: &str, removed: &mut Vec<String>) -> String {
    if !looks_like_plan(prose) {
        return prose.to_owned();
    }
    let mut out = String::with_capacity(prose.len());
    let mut copied = 0;
    for (start, end, value) in json_objects_in(prose) {
        if holds_plan(&value) {
            out.push_str(prose.get(copied..start).unwrap_or_default());
            removed.push(prose.get(start..end).unwrap_or_default().to_owned());
            copied = end;
        }
    }
    out.push_str(prose.get(copied..).unwrap_or_default());
    out
}

/// Whether a JSON value is, or holds, an object with a `sync_id` or `operations` key.
fn holds_plan(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            map.contains_key("sync_id")
                || map.contains_key("operations")
                || map.values().any(holds_plan)
        }
        serde_json::Value::Array(items) => items.iter().any(holds_plan),
        _ => false,
    }
}

/// Removes markdown mentions: `[@Name](...)` and any link to `/member/...`.
fn strip_links(text: &str, removed: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let (before, from_open) = rest.split_at(open);
        out.push_str(before);
        match link_end(from_open) {
            Some((end, label, target))
                if label.trim_start().starts_with('@') || target.contains("/member/") =>
            {
                removed.push(from_open.get(..end).unwrap_or_default().to_owned());
                rest = from_open.get(end..).unwrap_or_default();
            }
            _ => {
                out.push('[');
                rest = from_open.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// For text starting with `[`: the byte length of `[label](target)`, the label and the target.
fn link_end(text: &str) -> Option<(usize, &str, &str)> {
    let close = text.find(']')?;
    let label = text.get(1..close)?;
    if label.contains(['[', '\n']) {
        return None;
    }
    let after = text.get(close + 1..)?;
    let target_part = after.strip_prefix('(')?;
    let end = target_part.find(')')?;
    let target = target_part.get(..end)?;
    if target.contains(char::is_whitespace) {
        return None;
    }
    Some((close + 1 + 1 + end + 1, label, target))
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Removes `@Name` for the room's names (longest first), case-insensitively, not inside
/// words or e-mail addresses.
fn strip_names(text: &str, names: &[&str], removed: &mut Vec<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while let Some(off) = text.get(i..).and_then(|r| r.find('@')) {
        let at = i + off;
        i = at + 1;
        let starts_word = at == 0 || !bytes.get(at - 1).copied().is_some_and(is_word_byte);
        if !starts_word {
            continue;
        }
        let found = names.iter().find_map(|name| {
            let end = at + 1 + name.len();
            let candidate = text.get(at + 1..end)?;
            let ends_word = !bytes.get(end).copied().is_some_and(is_word_byte);
            (ends_word && candidate.to_lowercase() == name.to_lowercase()).then_some(end)
        });
        if let Some(end) = found {
            out.push_str(text.get(copied..at).unwrap_or_default());
            removed.push(text.get(at..end).unwrap_or_default().to_owned());
            copied = end;
            i = end;
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Removes any other `@handle` (a word starting with a letter after `@` at a word start):
/// whoever the model meant, the answer mentions only Altan.
fn strip_handles(text: &str, removed: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at_word_start = !prev.is_some_and(|p| p.is_alphanumeric() || "_.-/@".contains(p));
        let next_is_letter = chars.peek().is_some_and(|(_, n)| n.is_alphabetic());
        if c == '@' && at_word_start && next_is_letter {
            let mut end = text.len();
            while let Some(&(j, n)) = chars.peek() {
                if n.is_alphanumeric() || n == '_' || n == '-' {
                    chars.next();
                } else {
                    end = j;
                    break;
                }
            }
            removed.push(text.get(i..end).unwrap_or_default().to_owned());
            prev = Some('x');
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

const THANKS_WORDS: &[&str] = &["thank", "thanks", "thankyou", "thanx", "thx"];

/// Whether a piece of text thanks someone: one of `THANKS_WORDS` as a whole word, not part
/// of a URL or a file name (`/thank-you`, `thanks.html`), not a longer word (`thanksgiving`).
pub fn contains_thanks(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
        if !THANKS_WORDS.contains(&word.as_str()) {
            continue;
        }
        let before = start.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let after = chars.get(i).copied();
        let after2 = chars.get(i + 1).copied();
        let in_path = before.is_some_and(|c| "/-_.@#".contains(c))
            || after.is_some_and(|c| "-_/".contains(c))
            || (after == Some('.') && after2.is_some_and(char::is_alphanumeric));
        if !in_path {
            return true;
        }
    }
    false
}

/// Drops what thanks someone from a line: the thanking clause of a sentence when the rest
/// still says something (`Done, thanks.` → `Done.`), else the whole sentence.
fn strip_thanks(line: &str, removed: &mut Vec<String>) -> String {
    if !contains_thanks(line) {
        return line.to_owned();
    }
    let mut out = String::new();
    for sentence in sentences(line) {
        if !contains_thanks(sentence) {
            out.push_str(sentence);
            continue;
        }
        match without_thanks_clauses(sentence, removed) {
            Some(kept) => out.push_str(&kept),
            None => removed.push(sentence.trim().to_owned()),
        }
    }
    out
}

/// The sentence without its thanking clauses (split at `, ` and `; `), or `None` when
/// nothing else is left.
fn without_thanks_clauses(sentence: &str, removed: &mut Vec<String>) -> Option<String> {
    let body = sentence.trim_end();
    let spacing = sentence.get(body.len()..).unwrap_or_default();
    let core = body.trim_end_matches(['.', '!', '?']);
    let terminal = body.get(core.len()..).unwrap_or_default();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for clause in core.split(", ").flat_map(|c| c.split("; ")) {
        match contains_thanks(clause) {
            true => dropped.push(clause.trim()),
            false => kept.push(clause.trim()),
        }
    }
    let kept: Vec<&str> = kept.into_iter().filter(|c| !c.is_empty()).collect();
    if !kept.iter().any(|c| c.chars().any(char::is_alphanumeric)) {
        return None;
    }
    removed.extend(dropped.into_iter().map(str::to_owned));
    let mut text = kept.join(", ");
    let capital = core
        .chars()
        .find(|c| c.is_alphabetic())
        .is_some_and(char::is_uppercase);
    if capital {
        let mut chars = text.chars();
        if let Some(first) = chars.next() {
            text = first.to_uppercase().chain(chars).collect();
        }
    }
    let terminal = if terminal.is_empty() && !spacing.is_empty() {
        "."
    } else {
        terminal
    };
    Some(format!("{text}{terminal}{spacing}"))
}

/// Sentences with their trailing spaces: a run of `.`, `!` or `?` ends one when a space or
/// the end follows (so `20.00` and `e.g.x` stay whole).
fn sentences(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if !".!?".contains(c) {
            continue;
        }
        while chars.peek().is_some_and(|(_, n)| ".!?".contains(*n)) {
            chars.next();
        }
        if chars.peek().is_some_and(|(_, n)| !n.is_whitespace()) {
            continue;
        }
        while chars.peek().is_some_and(|(_, n)| n.is_whitespace()) {
            chars.next();
        }
        let end = chars.peek().map_or(line.len(), |(j, _)| *j);
        out.push(line.get(start..end).unwrap_or_default());
        start = end;
    }
    if start < line.len() {
        out.push(line.get(start..).unwrap_or_default());
    }
    out
}

/// Tidies a line something was cut out of; `None` when nothing worth keeping is left.
fn tidy_line(line: &str) -> Option<String> {
    let indent_len = line.len() - line.trim_start().len();
    let (indent, body) = line.split_at(indent_len);
    let mut words: Vec<&str> = body.split_whitespace().collect();
    // Drop a leading orphaned separator ("@Altan, please" → "please").
    while let Some(first) = words.first() {
        if first.chars().all(|c| ",;:".contains(c)) {
            words.remove(0);
        } else {
            break;
        }
    }
    let mut text = words.join(" ").replace("( )", "").replace("()", "");
    text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for punct in [",", ".", ";", ":", "!", "?", ")"] {
        text = text.replace(&format!(" {punct}"), punct);
    }
    // Separators left next to each other by a cut ("I am @X, done" → "I am, done" is fine,
    // "sync. , done" is not).
    loop {
        let before = text.len();
        for (pair, keep) in [
            (".,", "."),
            ("!,", "!"),
            ("?,", "?"),
            (",,", ","),
            (",.", "."),
            (";,", ";"),
            (",;", ";"),
        ] {
            text = text.replace(pair, keep);
        }
        if text.len() == before {
            break;
        }
    }
    let text = text.trim().trim_start_matches([',', ';', ':']).trim();
    let has_content = text.chars().any(char::is_alphanumeric);
    has_content.then(|| format!("{indent}{text}"))
}

/// At most one blank line in a row, none at the ends; trailing spaces dropped.
fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::new();
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(line);
    }
    out
}
