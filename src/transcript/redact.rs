//! Redaction: transcripts are committed and shared, so keys, tokens and Authorization headers
//! never reach one. Applied to headers and to every string of recorded JSON.

use serde_json::Value;

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Header names whose value is always a secret.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "openai-api-key",
    "stripe-account-key",
];

/// JSON keys whose string value is always a secret.
const SECRET_KEYS: &[&str] = &[
    "api_key",
    "apikey",
    "authorization",
    "token",
    "access_token",
    "refresh_token",
    "secret",
    "client_secret",
    "password",
    "secret_key",
];

/// The header value to store: secrets become `<redacted>`, anything else is kept (with
/// embedded keys masked).
pub(crate) fn header_value(name: &str, value: &str) -> String {
    if SECRET_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        REDACTED.to_string()
    } else {
        text(value)
    }
}

/// Masks secrets inside free text: `Bearer <x>`, OpenAI keys (`sk-...`), Stripe secret and
/// restricted keys (`sk_live_`, `sk_test_`, `rk_...`) and webhook secrets (`whsec_`).
pub fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while !rest.is_empty() {
        match find_secret(rest) {
            Some((start, end)) => {
                out.push_str(&rest[..start]);
                out.push_str(REDACTED);
                rest = &rest[end..];
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

/// Redacts a JSON document in place: values under secret keys, and secrets inside strings.
pub fn json(value: &mut Value) {
    match value {
        Value::String(s) => {
            let masked = text(s);
            if masked != *s {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let secret = SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str());
                match v {
                    Value::String(s) if secret && !s.is_empty() => *s = REDACTED.to_string(),
                    _ => json(v),
                }
            }
        }
        _ => {}
    }
}

/// The byte range of the first secret in `s`.
fn find_secret(s: &str) -> Option<(usize, usize)> {
    const PREFIXES: &[&str] = &[
        "Bearer ", "bearer ", "sk-", "sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_",
    ];
    let mut best: Option<(usize, usize)> = None;
    for prefix in PREFIXES {
        let mut from = 0;
        while let Some(pos) = s[from..].find(prefix) {
            let start = from + pos;
            from = start + prefix.len();
            // A key starts a word: `task-list` is not `sk-`.
            let starts_word = s[..start]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_' && c != '-');
            let token_len = s[from..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.~+/=".contains(c)))
                .unwrap_or(s.len() - from);
            if !starts_word || token_len < 8 {
                continue;
            }
            // `Bearer x` keeps the word, hides the token.
            let secret_start = if prefix.eq_ignore_ascii_case("bearer ") {
                from
            } else {
                start
            };
            let candidate = (secret_start, from + token_len);
            if best.is_none_or(|b| candidate.0 < b.0) {
                best = Some(candidate);
            }
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headers_and_keys_in_text() {
        assert_eq!(header_value("Authorization", "Bearer abc"), REDACTED);
        assert_eq!(
            header_value("idempotency-key", "altan-pay-1"),
            "altan-pay-1"
        );
        assert_eq!(
            text("key sk-proj-abcdefgh1234 and Bearer tok_123456789 end"),
            "key <redacted> and Bearer <redacted> end"
        );
        assert_eq!(text("task-list sk-short"), "task-list sk-short");
        assert_eq!(text("stripe sk_live_51Habcdefg"), "stripe <redacted>");
    }

    #[test]
    fn json_values_under_secret_keys_and_inside_strings() {
        let mut v = json!({
            "api_key": "anything",
            "nested": [{"token": "t0k3n"}, "use sk-abcdefghijkl please"],
            "name": "Pro",
            "password": ""
        });
        json(&mut v);
        assert_eq!(
            v,
            json!({
                "api_key": REDACTED,
                "nested": [{"token": REDACTED}, "use <redacted> please"],
                "name": "Pro",
                "password": ""
            })
        );
    }
}
