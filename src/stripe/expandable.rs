//! `Expandable<T>`: a reference Stripe sends as an id, or as the whole object when the
//! request asked for `expand[]`.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::HasId;

/// An id string, or the expanded object (`product` on a price, `customer` on a subscription).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    /// Not expanded: only the id.
    Id(String),
    /// Expanded: the full object (boxed, since objects refer to each other).
    Object(Box<T>),
}

impl<T: HasId> Expandable<T> {
    /// The id, whichever form Stripe sent.
    pub fn id(&self) -> &str {
        match self {
            Self::Id(id) => id,
            Self::Object(obj) => obj.id(),
        }
    }
}

impl<T> Expandable<T> {
    /// The expanded object, if Stripe sent one.
    pub fn as_object(&self) -> Option<&T> {
        match self {
            Self::Id(_) => None,
            Self::Object(obj) => Some(obj),
        }
    }

    /// Whether Stripe sent the whole object rather than the id.
    pub fn is_expanded(&self) -> bool {
        matches!(self, Self::Object(_))
    }
}

impl<T> From<String> for Expandable<T> {
    fn from(id: String) -> Self {
        Self::Id(id)
    }
}

impl<T> From<&str> for Expandable<T> {
    fn from(id: &str) -> Self {
        Self::Id(id.to_owned())
    }
}

/// Hand-written rather than `untagged` so that a malformed expanded object reports its own
/// error (e.g. "coupon ... has neither percent_off nor amount_off") instead of serde's
/// "data did not match any variant".
impl<'de, T: DeserializeOwned> Deserialize<'de> for Expandable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(id) => Ok(Self::Id(id)),
            value @ Value::Object(_) => T::deserialize(value)
                .map(|obj| Self::Object(Box::new(obj)))
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format_args!(
                "expected an id string or an expanded object, found {}",
                json_kind(&other)
            ))),
        }
    }
}

/// What kind of JSON value `value` is, as an error message says it: `a string`, `null`, ...
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
