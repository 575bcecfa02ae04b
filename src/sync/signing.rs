//! Plan signatures: the runtime signs every sync plan it hands over with a key it shares with
//! the applier, so the applier can tell the runtime's plan from one written by anyone else
//! (the model, a room member, a person pasting JSON).
//!
//! The signature is `hmac-sha256:` and the 64 lowercase hex digits of the HMAC-SHA256, keyed
//! with the key's UTF-8 bytes, of the plan's canonical JSON: the plan object without its
//! `signature` field, object keys sorted at every level, no whitespace, strings and numbers as
//! serde_json writes them ([`canonical_json`]).

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;

/// The field of a plan that holds its signature.
pub(crate) const SIGNATURE_FIELD: &str = "signature";

/// What every signature starts with: the algorithm.
pub const SIGNATURE_PREFIX: &str = "hmac-sha256:";

type HmacSha256 = Hmac<Sha256>;

/// The key plans are signed with and checked against; never shown in `Debug`.
#[derive(Clone)]
pub struct PlanSigningKey(SecretString);

impl std::fmt::Debug for PlanSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanSigningKey([redacted])")
    }
}

/// Why a key cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    /// The key text is empty; an empty key would let anyone sign.
    #[error("the plan signing key is empty")]
    Empty,
}

/// Why a plan's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanSignatureError {
    /// The plan has no `signature` (or a null one) while a key is configured.
    #[error(
        "the plan is not signed, and a plan signing key is configured: only plans the runtime signed are applied (a plan copied from the model's text, or made by hand, carries no signature)"
    )]
    Unsigned,
    /// The `signature` is not `hmac-sha256:` and 64 hex digits.
    #[error(
        "the plan's `signature` is malformed: expected \"hmac-sha256:\" and 64 hex digits, got {found}"
    )]
    Malformed {
        /// What the field held: the start of the text, or its JSON type.
        found: String,
    },
    /// The signature is well formed but not the HMAC of this plan under the configured key.
    #[error(
        "the plan's signature does not match its contents under the configured key: it was changed after signing, signed with another key, or not written by the runtime"
    )]
    Mismatch,
}

impl PlanSigningKey {
    /// A key from its text (taken as UTF-8 bytes); an empty key is refused.
    pub fn new(key: impl Into<String>) -> Result<PlanSigningKey, SigningKeyError> {
        let key: String = key.into();
        if key.is_empty() {
            return Err(SigningKeyError::Empty);
        }
        Ok(PlanSigningKey(SecretString::from(key)))
    }

    /// For clap: `--plan-signing-key` and `ALTAN_PAY_PLAN_SIGNING_KEY`.
    pub fn parse_arg(key: &str) -> Result<PlanSigningKey, SigningKeyError> {
        PlanSigningKey::new(key)
    }

    /// A 32-byte key for another purpose, derived from this one under `label` (HMAC-SHA256 of
    /// the label): processes holding the same signing key derive the same key, and nothing
    /// derived under one label says anything about the signing key or another label.
    #[cfg(feature = "mcp")]
    pub(crate) fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, plan: &Value) -> HmacSha256 {
        // HMAC takes a key of any length, so this cannot fail; an empty MAC would only ever
        // mismatch.
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        mac.update(canonical_unsigned(plan).as_bytes());
        mac
    }

    /// The signature of a plan's JSON (any `signature` field in it is left out).
    pub fn sign(&self, plan: &Value) -> String {
        let digest = self.mac(plan).finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{SIGNATURE_PREFIX}{hex}")
    }

    /// Checks the `signature` field of a plan's JSON against its other fields, in constant time.
    pub fn verify(&self, plan: &Value) -> Result<(), PlanSignatureError> {
        let given = match plan.get(SIGNATURE_FIELD) {
            None | Some(Value::Null) => return Err(PlanSignatureError::Unsigned),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(PlanSignatureError::Malformed {
                    found: format!("a JSON {}", json_type(other)),
                });
            }
        };
        let malformed = || PlanSignatureError::Malformed {
            found: format!("{:?}", given.chars().take(80).collect::<String>()),
        };
        let digest = given
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(crate::stripe::signature::unhex)
            .ok_or_else(malformed)?;
        if digest.len() != 32 {
            return Err(malformed());
        }
        self.mac(plan)
            .verify_slice(&digest)
            .map_err(|_| PlanSignatureError::Mismatch)
    }
}

/// JSON with object keys sorted at every level, whatever map order serde_json was built with,
/// so the same operations always hash to the same sync id.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The bytes a signature covers: the plan's canonical JSON without `signature`.
fn canonical_unsigned(plan: &Value) -> String {
    match plan {
        Value::Object(map) if map.contains_key(SIGNATURE_FIELD) => {
            let mut unsigned = map.clone();
            unsigned.remove(SIGNATURE_FIELD);
            canonical_json(&Value::Object(unsigned))
        }
        other => canonical_json(other),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> Value {
        json!({"sync_id": "sync_abc", "operations": [{"table": "products", "op": "delete", "key": {"id": "prod_1"}}]})
    }

    #[test]
    fn a_signed_plan_verifies_and_any_change_breaks_it() {
        let key = PlanSigningKey::new("k1").unwrap();
        let mut p = plan();
        p[SIGNATURE_FIELD] = json!(key.sign(&p));
        assert_eq!(key.verify(&p), Ok(()));
        let mut changed = p.clone();
        changed["operations"][0]["key"]["id"] = json!("prod_2");
        assert_eq!(key.verify(&changed), Err(PlanSignatureError::Mismatch));
        let other = PlanSigningKey::new("k2").unwrap();
        assert_eq!(other.verify(&p), Err(PlanSignatureError::Mismatch));
    }

    #[test]
    fn unsigned_and_malformed_signatures_are_named() {
        let key = PlanSigningKey::new("k1").unwrap();
        assert_eq!(key.verify(&plan()), Err(PlanSignatureError::Unsigned));
        let mut p = plan();
        p[SIGNATURE_FIELD] = json!("hmac-sha256:zz");
        assert!(matches!(
            key.verify(&p),
            Err(PlanSignatureError::Malformed { .. })
        ));
        p[SIGNATURE_FIELD] = json!(7);
        assert!(matches!(
            key.verify(&p),
            Err(PlanSignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn the_signature_does_not_depend_on_key_order_and_the_key_never_shows_in_debug() {
        let key = PlanSigningKey::new("secret-key-text").unwrap();
        let a: Value = serde_json::from_str(r#"{"sync_id":"s","operations":[]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"operations":[],"sync_id":"s"}"#).unwrap();
        assert_eq!(key.sign(&a), key.sign(&b));
        assert!(!format!("{key:?}").contains("secret-key-text"));
        assert_eq!(PlanSigningKey::new("").err(), Some(SigningKeyError::Empty));
    }
}
