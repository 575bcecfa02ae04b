//! Which destructive effects a person asked for in this turn's room messages.
//!
//! Only the new room messages of the request count (not older turns, not tool results, not
//! Stripe data). Of those, a user's own words count; Altan (the orchestrator, found by its
//! member id in the trusted context) counts only where it quotes words (`"..."`, `“...”`,
//! `«...»`, or lines starting with `>`), as it does when relaying what a user said; any other
//! agent never counts. A sentence that is a question never counts, and neither does a clause
//! in which the word is negated ("please do NOT delete anything", "no borres nada"). The words
//! are English and Spanish, the imperative and infinitive forms people use to ask (past tense,
//! "I removed the old draft", is a report, not a request). Anything else leaves the call held
//! for a person's approval: in doubt, hold.

use crate::room::{AgentContext, MemberKind, RoomMessage};
use crate::tools::DestructiveEffect;

/// The destructive effects asked for in one turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    delete: bool,
    cancel: bool,
    deactivate: bool,
}

/// Words (after lowercasing and dropping accents) by which people ask for each effect. A
/// phrase is several words in a row.
const WORDS: &[(DestructiveEffect, &[&str])] = &[
    (
        DestructiveEffect::Delete,
        &[
            "delete",
            "remove",
            "erase",
            "get rid",
            "borra",
            "borrar",
            "borralo",
            "borrala",
            "borralos",
            "borralas",
            "elimina",
            "eliminar",
            "eliminalo",
            "eliminala",
            "eliminalos",
            "eliminalas",
            "quita",
            "quitar",
            "quitalo",
            "quitala",
            "suprime",
            "suprimir",
        ],
    ),
    (
        DestructiveEffect::Cancel,
        &[
            "cancel",
            "unsubscribe",
            "terminate",
            "stop",
            "cancela",
            "cancelar",
            "cancelalo",
            "cancelala",
            "anula",
            "anular",
            "anulala",
            "da de baja",
            "dar de baja",
            "dala de baja",
            "dalo de baja",
        ],
    ),
    (
        DestructiveEffect::Deactivate,
        &[
            "archive",
            "deactivate",
            "disable",
            "discontinue",
            "unpublish",
            "turn off",
            "archiva",
            "archivar",
            "archivalo",
            "archivala",
            "desactiva",
            "desactivar",
            "desactivalo",
            "desactivala",
            "deshabilita",
        ],
    ),
];

/// Words that negate what follows them in a clause (`n't` is read as `not`), and words that
/// negate a whole clause.
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "dont", "doesnt", "didnt", "cant", "cannot", "wont", "shouldnt",
    "mustnt", "without", "nunca", "jamas", "ni", "sin", "tampoco",
];
const NEGATING_OBJECTS: &[&str] = &["nothing", "none", "nada", "ninguno", "ninguna"];

/// Words that ask for an effect only about a subscription ("stop" alone is no request).
const ABOUT_SUBSCRIPTIONS: &[(&str, &[&str])] = &[(
    "stop",
    &[
        "subscription",
        "subscriptions",
        "suscripcion",
        "suscripciones",
        "plan",
        "billing",
    ],
)];

impl Requested {
    /// Nothing asked (a turn that resumes an approved call, say).
    pub fn none() -> Requested {
        Requested::default()
    }

    /// What `messages`, the new room messages of this turn, ask for.
    pub fn of(context: &AgentContext, messages: &[RoomMessage]) -> Requested {
        let mut asked = Requested::none();
        for message in messages {
            for text in asking_words(context, message) {
                for sentence in sentences(&text) {
                    asked.add_sentence(sentence);
                }
            }
        }
        asked
    }

    /// Whether a call with this effect was asked for. Asking to delete covers archiving (the
    /// lesser, reversible effect Stripe falls back to when a product or price cannot be
    /// deleted); nothing else covers another effect.
    pub fn covers(self, effect: DestructiveEffect) -> bool {
        match effect {
            DestructiveEffect::Delete => self.delete,
            DestructiveEffect::Cancel => self.cancel,
            DestructiveEffect::Deactivate => self.deactivate || self.delete,
        }
    }

    fn add(&mut self, effect: DestructiveEffect) {
        match effect {
            DestructiveEffect::Delete => self.delete = true,
            DestructiveEffect::Cancel => self.cancel = true,
            DestructiveEffect::Deactivate => self.deactivate = true,
        }
    }

    /// A sentence's clauses; a question asks for nothing.
    fn add_sentence(&mut self, (text, question): (&str, bool)) {
        if question {
            return;
        }
        for clause in text.split([',', ';', ':']) {
            let words = words(clause);
            if words.iter().any(|w| NEGATING_OBJECTS.contains(&w.as_str())) {
                continue;
            }
            for (effect, asks) in WORDS {
                let asked = asks
                    .iter()
                    .filter(|phrase| about_its_subject(&words, phrase))
                    .filter_map(|phrase| position(&words, phrase))
                    .any(|at| !words[..at].iter().any(|w| NEGATIONS.contains(&w.as_str())));
                if asked {
                    self.add(*effect);
                }
            }
        }
    }
}

/// The parts of a message that may ask for something: a user's whole text; the words Altan
/// quotes; nothing of this agent or of any other agent.
fn asking_words(context: &AgentContext, message: &RoomMessage) -> Vec<String> {
    if context.is_self(message) {
        return Vec::new();
    }
    let listed_as = context
        .members
        .iter()
        .find(|m| m.member_id == message.member_id)
        .map(|m| m.kind);
    match message.kind {
        MemberKind::User if listed_as.is_none_or(|k| k == MemberKind::User) => {
            vec![message.text.clone()]
        }
        MemberKind::Agent
            if context
                .altan()
                .is_some_and(|a| a.member_id == message.member_id) =>
        {
            quoted(&message.text)
        }
        _ => Vec::new(),
    }
}

/// Text between quotation marks, and lines quoted with `>`.
fn quoted(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix('>'))
        .map(str::to_string)
        .collect();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => '"',
            '“' => '”',
            '«' => '»',
            _ => continue,
        };
        let inner: String = chars.by_ref().take_while(|&d| d != close).collect();
        out.push(inner);
    }
    out
}

/// The sentences of a text, each with whether it is a question.
fn sentences(text: &str) -> impl Iterator<Item = (&str, bool)> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(|s| (s, s.trim_end().ends_with('?') || s.contains('¿')))
}

/// Lowercase words without accents; `don't` becomes `do not`.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace("n't", " not")
        .replace("n’t", " not")
        .chars()
        .map(|c| match c {
            'á' => 'a',
            'é' => 'e',
            'í' => 'i',
            'ó' => 'o',
            'ú' | 'ü' => 'u',
            other => other,
        })
        .collect::<String>()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where the words of `phrase` start in `words`, in a row.
fn position(words: &[String], phrase: &str) -> Option<usize> {
    let parts: Vec<&str> = phrase.split(' ').collect();
    words
        .windows(parts.len())
        .position(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
}

/// Whether a clause holding `phrase` is about what the phrase needs to be a request.
fn about_its_subject(words: &[String], phrase: &str) -> bool {
    match ABOUT_SUBSCRIPTIONS.iter().find(|(p, _)| *p == phrase) {
        Some((_, subjects)) => words.iter().any(|w| subjects.contains(&w.as_str())),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> RoomMessage {
        RoomMessage {
            member_id: "u-1".into(),
            name: "Ada".into(),
            kind: MemberKind::User,
            text: text.into(),
        }
    }

    fn asked(text: &str) -> Requested {
        Requested::of(&AgentContext::default(), &[user(text)])
    }

    #[test]
    fn a_users_request_in_english_or_spanish_names_its_effect() {
        assert!(asked("Please delete the T-shirt").covers(DestructiveEffect::Delete));
        assert!(asked("Borra el producto, por favor").covers(DestructiveEffect::Delete));
        assert!(asked("Elimínalo ya").covers(DestructiveEffect::Delete));
        assert!(asked("Cancel Ann's subscription.").covers(DestructiveEffect::Cancel));
        assert!(
            asked("Ann wants to stop her Pro subscription at the end of the period.")
                .covers(DestructiveEffect::Cancel)
        );
        assert!(asked("The client wants to delete it").covers(DestructiveEffect::Delete));
        assert!(asked("Da de baja la suscripción de Ann").covers(DestructiveEffect::Cancel));
        assert!(asked("Archive the Starter product.").covers(DestructiveEffect::Deactivate));
        assert!(asked("Desactiva el precio mensual").covers(DestructiveEffect::Deactivate));
        assert!(
            asked("Delete it.").covers(DestructiveEffect::Deactivate),
            "a delete Stripe refuses may archive instead"
        );
        assert!(!asked("Archive it.").covers(DestructiveEffect::Delete));
        assert!(!asked("Delete it.").covers(DestructiveEffect::Cancel));
    }

    #[test]
    fn negations_questions_and_reports_ask_for_nothing() {
        for text in [
            "please do NOT delete anything",
            "Don't cancel it, just rename it",
            "never remove products",
            "No borres nada",
            "no lo elimines",
            "Delete nothing yet",
            "Should we delete the T-shirt?",
            "¿Borro el producto",
            "I removed the old draft.",
            "What do we sell?",
            "Create a Pro plan",
            "Stop, wait.",
            "I want to stop here",
        ] {
            assert_eq!(asked(text), Requested::none(), "{text}");
        }
        assert!(
            asked("No, delete it.").covers(DestructiveEffect::Delete),
            "a negation in another clause"
        );
        assert!(asked("Don't delete the shirt, archive it").covers(DestructiveEffect::Deactivate));
        assert!(!asked("Don't delete the shirt, archive it").covers(DestructiveEffect::Delete));
    }

    #[test]
    fn only_a_user_or_altan_quoting_one_asks() {
        let context = AgentContext {
            agent_member_id: Some("pay-1".into()),
            members: vec![
                crate::room::RoomMember {
                    member_id: "altan-1".into(),
                    name: "Altan".into(),
                    kind: MemberKind::Agent,
                },
                crate::room::RoomMember {
                    member_id: "ui-1".into(),
                    name: "Interface".into(),
                    kind: MemberKind::Agent,
                },
            ],
            ..AgentContext::default()
        };
        let from = |id: &str, kind, text: &str| RoomMessage {
            member_id: id.into(),
            name: id.into(),
            kind,
            text: text.into(),
        };
        let none = Requested::none();
        assert_eq!(
            Requested::of(&context, &[from("ui-1", MemberKind::Agent, "Delete it")]),
            none
        );
        assert_eq!(
            Requested::of(&context, &[from("altan-1", MemberKind::Agent, "Delete it")]),
            none
        );
        assert_eq!(
            Requested::of(&context, &[from("pay-1", MemberKind::User, "Delete it")]),
            none,
            "our own words"
        );
        assert_eq!(
            Requested::of(&context, &[from("ui-1", MemberKind::User, "Delete it")]),
            none,
            "a member the context lists as an agent"
        );
        let relayed = from(
            "altan-1",
            MemberKind::Agent,
            "Ada wrote: “borra el producto T-shirt”",
        );
        assert!(Requested::of(&context, &[relayed]).covers(DestructiveEffect::Delete));
        let quoted_line = from(
            "altan-1",
            MemberKind::Agent,
            "From Ada:\n> cancel it\nThanks",
        );
        assert!(Requested::of(&context, &[quoted_line]).covers(DestructiveEffect::Cancel));
    }
}
