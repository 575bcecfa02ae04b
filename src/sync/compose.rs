//! The answer composer: the model's text cleaned of mentions and thank-yous, then the sync
//! plan, the inconsistencies and exactly one mention of Altan at the very end (or none).

use serde::{Deserialize, Serialize};

use super::ack::Inconsistency;
use super::ledger::SyncPlan;

/// A member of the room as the composer needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// The room's member id, for `[@Name](/member/<id>)`; unknown means plain `@Name`.
    pub member_id: Option<String>,
}

impl Member {
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
    pub me: Member,
    pub altan: Member,
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

/// Everything the final answer is made of.
#[derive(Debug, Clone, Copy)]
pub struct AnswerInput<'a> {
    /// The model's final text, as written.
    pub model_text: &'a str,
    pub plan: Option<&'a SyncPlan>,
    pub inconsistencies: &'a [Inconsistency],
    pub room: &'a Room,
    /// Agents have been answering each other with no person in between: mention nobody.
    pub agents_bouncing: bool,
}

/// The one mention an answer ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    pub name: String,
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
    pub text: String,
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
    if let Some(plan) = input.plan {
        let count = plan.operations().len();
        let noun = if count == 1 { "change" } else { "changes" };
        let mut list = format!("Database sync {} ({count} {noun}):", plan.sync_id());
        for op in plan.operations() {
            list.push_str("\n- ");
            list.push_str(&op.summary());
        }
        sections.push(list);
        sections.push(format!("```json\n{}\n```", plan.to_json_text()));
    }
    if !input.inconsistencies.is_empty() {
        let mut block = String::from("Needs manual intervention:");
        for inc in input.inconsistencies {
            block.push_str("\n- ");
            block.push_str(&inc.message);
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

    let mut out = String::new();
    for segment in segments(text) {
        match segment {
            Segment::Code(code) => {
                if code.contains("\"sync_id\"") || code.contains("\"operations\"") {
                    removed.push(code.trim().to_owned());
                    continue;
                }
                let code = strip_links(&code, removed);
                out.push_str(&strip_names(&code, &names, removed));
            }
            Segment::Prose(prose) => {
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

/// Splits at ``` fences; an unclosed fence runs to the end.
fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    for line in text.split_inclusive('\n') {
        let fence = line.trim_start().starts_with("```");
        if fence && !in_code {
            if !current.is_empty() {
                out.push(Segment::Prose(std::mem::take(&mut current)));
            }
            in_code = true;
            current.push_str(line);
        } else if fence && in_code {
            current.push_str(line);
            out.push(Segment::Code(std::mem::take(&mut current)));
            in_code = false;
        } else {
            current.push_str(line);
        }
    }
    if !current.is_empty() {
        out.push(match in_code {
            true => Segment::Code(current),
            false => Segment::Prose(current),
        });
    }
    out
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
