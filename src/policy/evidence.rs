//! [`Provenance`]'s entries as the stores keep them: one row per object, Stripe id and room
//! word, so a save writes what a turn added instead of the whole evidence of the thread. The
//! entries are shared (`Arc`): a store remembers what it wrote as an [`EvidenceMark`] (weak
//! references and keys, not copies), and an entry is unchanged when it is the very allocation
//! the mark remembers. The rules read the same data as before; only its representation is here.

// The marks and changes are read only by the SQLite and PostgreSQL stores (`store::rows`);
// without them the provenance keeps its marks unread.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use serde_json::Value;

use super::Provenance;

/// Which of the three sets an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EvidenceKind {
    /// The latest object Stripe returned with this id (the row holds its JSON).
    Object,
    /// An id a Stripe result named.
    StripeId,
    /// A word of a room message.
    RoomWord,
}

impl EvidenceKind {
    /// The number the stores keep in their `kind` column.
    pub(crate) fn code(self) -> i16 {
        match self {
            EvidenceKind::Object => 0,
            EvidenceKind::StripeId => 1,
            EvidenceKind::RoomWord => 2,
        }
    }

    /// The kind of a stored `kind` column; `None` for a number no version wrote.
    pub(crate) fn from_code(code: i64) -> Option<EvidenceKind> {
        match code {
            0 => Some(EvidenceKind::Object),
            1 => Some(EvidenceKind::StripeId),
            2 => Some(EvidenceKind::RoomWord),
            _ => None,
        }
    }
}

/// One entry, borrowed: what a store writes as one row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evidence<'a> {
    /// The set it belongs to.
    pub kind: EvidenceKind,
    /// The id or word.
    pub key: &'a str,
    /// The object, for [`EvidenceKind::Object`].
    pub object: Option<&'a Value>,
}

impl Evidence<'_> {
    /// The row's value: the object's JSON, empty for an id or a word.
    pub(crate) fn text(&self) -> String {
        self.object.map(Value::to_string).unwrap_or_default()
    }
}

/// What a store last wrote of a thread's provenance: the keys, and the objects by identity.
#[derive(Debug, Clone, Default)]
pub(crate) struct EvidenceMark {
    objects: HashMap<Arc<str>, Weak<Value>>,
    stripe_ids: HashSet<Arc<str>>,
    room_words: HashSet<Arc<str>>,
}

/// What a provenance holds beyond (or differently from) a mark.
#[derive(Debug, Default)]
pub(crate) struct EvidenceChanges<'a> {
    /// Entries to insert or replace.
    pub written: Vec<Evidence<'a>>,
    /// Entries the mark has and the provenance lacks (a save of an older copy): deleted.
    pub removed: Vec<(EvidenceKind, Arc<str>)>,
}

impl Provenance {
    /// Every entry.
    pub(crate) fn evidence(&self) -> impl Iterator<Item = Evidence<'_>> {
        let objects = self.objects.iter().map(|(k, v)| Evidence {
            kind: EvidenceKind::Object,
            key: k,
            object: Some(&**v),
        });
        let ids = self.stripe_ids.iter().map(|k| Evidence {
            kind: EvidenceKind::StripeId,
            key: k,
            object: None,
        });
        let words = self.room_words.iter().map(|k| Evidence {
            kind: EvidenceKind::RoomWord,
            key: k,
            object: None,
        });
        objects.chain(ids).chain(words)
    }

    /// Adds an entry read back from a store; an object row that is not JSON is refused.
    pub(crate) fn restore(
        &mut self,
        kind: EvidenceKind,
        key: &str,
        text: &str,
    ) -> serde_json::Result<()> {
        match kind {
            EvidenceKind::Object => {
                let object: Value = serde_json::from_str(text)?;
                self.objects.insert(Arc::from(key), Arc::new(object));
            }
            EvidenceKind::StripeId => {
                self.stripe_ids.insert(Arc::from(key));
            }
            EvidenceKind::RoomWord => {
                self.room_words.insert(Arc::from(key));
            }
        }
        Ok(())
    }

    /// The mark of this provenance once written whole.
    pub(crate) fn mark(&self) -> EvidenceMark {
        EvidenceMark {
            objects: self
                .objects
                .iter()
                .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
                .collect(),
            stripe_ids: self.stripe_ids.clone(),
            room_words: self.room_words.clone(),
        }
    }

    /// What this provenance holds that `mark` does not, or holds as another object, and what
    /// `mark` holds that this one lacks.
    pub(crate) fn changes_since(&self, mark: &EvidenceMark) -> EvidenceChanges<'_> {
        let mut changes = EvidenceChanges::default();
        for (key, object) in &self.objects {
            let same = mark
                .objects
                .get(key)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(object)));
            if !same {
                changes.written.push(Evidence {
                    kind: EvidenceKind::Object,
                    key,
                    object: Some(&**object),
                });
            }
        }
        for (kind, now, before) in [
            (EvidenceKind::StripeId, &self.stripe_ids, &mark.stripe_ids),
            (EvidenceKind::RoomWord, &self.room_words, &mark.room_words),
        ] {
            let mut kept = 0;
            for key in now {
                if before.contains(key) {
                    kept += 1;
                } else {
                    changes.written.push(Evidence {
                        kind,
                        key,
                        object: None,
                    });
                }
            }
            if kept < before.len() {
                let gone = before.iter().filter(|k| !now.contains(*k));
                changes.removed.extend(gone.map(|k| (kind, k.clone())));
            }
        }
        let kept_objects = self.objects.len() - changes.objects_written();
        if kept_objects < mark.objects.len() {
            let gone = mark
                .objects
                .keys()
                .filter(|k| !self.objects.contains_key(*k));
            changes
                .removed
                .extend(gone.map(|k| (EvidenceKind::Object, k.clone())));
        }
        changes
    }

    /// `mark` brought up to this provenance, given the changes written since it.
    pub(crate) fn advance(&self, mark: &mut EvidenceMark, changes: &EvidenceChanges<'_>) {
        for (kind, key) in &changes.removed {
            let key: &str = key;
            match kind {
                EvidenceKind::Object => {
                    mark.objects.remove(key);
                }
                EvidenceKind::StripeId => {
                    mark.stripe_ids.remove(key);
                }
                EvidenceKind::RoomWord => {
                    mark.room_words.remove(key);
                }
            }
        }
        for entry in &changes.written {
            match entry.kind {
                EvidenceKind::Object => {
                    if let Some((key, object)) = self.objects.get_key_value(entry.key) {
                        mark.objects.insert(key.clone(), Arc::downgrade(object));
                    }
                }
                EvidenceKind::StripeId => {
                    if let Some(key) = self.stripe_ids.get(entry.key) {
                        mark.stripe_ids.insert(key.clone());
                    }
                }
                EvidenceKind::RoomWord => {
                    if let Some(key) = self.room_words.get(entry.key) {
                        mark.room_words.insert(key.clone());
                    }
                }
            }
        }
    }
}

impl EvidenceChanges<'_> {
    fn objects_written(&self) -> usize {
        self.written
            .iter()
            .filter(|e| e.kind == EvidenceKind::Object)
            .count()
    }
}

/// Serde for the shared objects: the same JSON as a map of owned values.
pub(super) mod shared_map {
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(
        map: &HashMap<Arc<str>, Arc<Value>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(map.iter().map(|(k, v)| (&**k, &**v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<Arc<str>, Arc<Value>>, D::Error> {
        let map = HashMap::<String, Value>::deserialize(d)?;
        Ok(map
            .into_iter()
            .map(|(k, v)| (Arc::from(k), Arc::new(v)))
            .collect())
    }
}

/// Serde for the shared ids and words: the same JSON as a list of strings.
pub(super) mod shared_set {
    use std::collections::HashSet;
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(set: &HashSet<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(set.iter().map(|k| &**k))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashSet<Arc<str>>, D::Error> {
        let keys = Vec::<String>::deserialize(d)?;
        Ok(keys.into_iter().map(Arc::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_save_after_a_turn_writes_only_what_the_turn_saw() {
        let mut p = Provenance::default();
        p.observe_result(&json!({"id": "prod_1", "object": "product"}));
        p.observe_room_text("hello prod_1");
        let mut mark = p.mark();
        let mut next = p.clone();
        next.observe_result(&json!({"id": "price_1", "object": "price", "product": "prod_1"}));
        next.observe_result(&json!({"id": "prod_1", "object": "product"}));
        let changes = next.changes_since(&mark);
        let mut keys: Vec<_> = changes.written.iter().map(|e| (e.kind, e.key)).collect();
        keys.sort_by_key(|(k, key)| (k.code(), key.to_string()));
        assert_eq!(
            keys,
            vec![
                (EvidenceKind::Object, "price_1"),
                (EvidenceKind::StripeId, "price_1")
            ]
        );
        assert!(changes.removed.is_empty());
        next.advance(&mut mark, &changes);
        assert!(next.changes_since(&mark).written.is_empty());
    }

    #[test]
    fn a_save_of_an_older_copy_removes_what_it_lacks_and_rewrites_a_changed_object() {
        let mut old = Provenance::default();
        old.observe_result(&json!({"id": "prod_1", "object": "product", "active": true}));
        let mut new = old.clone();
        new.observe_result(&json!({"id": "prod_1", "object": "product", "active": false}));
        new.observe_room_text("word");
        let mark = new.mark();
        let changes = old.changes_since(&mark);
        assert_eq!(changes.written.len(), 1);
        assert_eq!(changes.written[0].key, "prod_1");
        assert_eq!(
            changes.written[0].object,
            Some(&json!({"id": "prod_1", "object": "product", "active": true}))
        );
        assert_eq!(
            changes.removed,
            vec![(EvidenceKind::RoomWord, Arc::from("word"))]
        );
    }

    #[test]
    fn entries_restored_from_rows_equal_the_provenance_they_came_from() {
        let mut p = Provenance::default();
        p.observe_result(&json!({"id": "cus_1", "object": "customer", "subscriptions": {"data": [{"id": "sub_1", "object": "subscription", "customer": "cus_1"}]}}));
        p.observe_room_text("please look at cus_1");
        let mut back = Provenance::default();
        for e in p.evidence() {
            back.restore(e.kind, e.key, &e.text()).unwrap();
        }
        assert_eq!(back, p);
        assert!(back.restore(EvidenceKind::Object, "x", "not json").is_err());
    }
}
