//! Bearer tokens, each allowed a set of Altan accounts (or all of them). Tokens come from a
//! TOML/JSON file or `ALTAN_PAY_SERVER_TOKENS`; their `Debug` never shows a token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// What one token may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every account: a token configured with `*`.
    AllAccounts,
    /// Only these account ids; any other account is refused with 403.
    Accounts(BTreeSet<String>),
}

/// What a request may do, once its token is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No tokens are configured: the server is loopback-only and everything is allowed.
    Open,
    /// A valid bearer token, limited to its scope.
    Token(Scope),
}

impl Access {
    /// Whether the request may act for `account` (`None`: a request naming no account, which
    /// only unscoped access may make, since the agent would otherwise take one from the chat).
    pub fn allows(&self, account: Option<&str>) -> bool {
        match self {
            Access::Open | Access::Token(Scope::AllAccounts) => true,
            Access::Token(Scope::Accounts(set)) => account.is_some_and(|a| set.contains(a)),
        }
    }

    /// `Ok` when allowed, else the 403 that says why.
    pub fn check(&self, account: Option<&str>) -> Result<(), ApiError> {
        if self.allows(account) {
            return Ok(());
        }
        let message = match account {
            Some(a) => format!("this token may not act for account `{a}`"),
            None => "this token is scoped to accounts; the request must name one (X-Altan-Account-Id or context.account_id)".to_string(),
        };
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message))
    }
}

/// The configured tokens, stored as SHA-256 digests so the plain text is not kept around.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Scope)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: Vec<&Scope> = self.entries.iter().map(|(_, s)| s).collect();
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .field("scopes", &scopes)
            .finish()
    }
}

/// Why a token configuration could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokens ({origin}): {message}")]
pub struct TokenError {
    /// Where the configuration came from (`ALTAN_PAY_TOKENS` or the file's path).
    pub origin: String,
    /// What is wrong with it, naming the entry.
    pub message: String,
}

#[derive(Deserialize)]
struct TokenFile {
    tokens: BTreeMap<String, ScopeSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeSpec {
    One(String),
    Many(Vec<String>),
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Whether no token is configured (the server then serves loopback only, unauthenticated).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every token of `other`.
    pub fn extend(&mut self, other: Tokens) {
        self.entries.extend(other.entries);
    }

    /// Adds a token; `accounts` empty or containing `*` means every account.
    pub fn insert(&mut self, token: &str, accounts: &[&str]) {
        let scope = if accounts.is_empty() || accounts.contains(&"*") {
            Scope::AllAccounts
        } else {
            Scope::Accounts(accounts.iter().map(|a| a.to_string()).collect())
        };
        self.entries.push((digest(token), scope));
    }

    /// `token=acct1,acct2;token2=*` (whitespace around parts is ignored).
    pub fn parse_env(text: &str) -> Result<Tokens, TokenError> {
        let fail = |message: String| TokenError {
            origin: "ALTAN_PAY_SERVER_TOKENS".into(),
            message,
        };
        let mut tokens = Tokens::default();
        for (n, entry) in text.split(';').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some((token, accounts)) = entry.split_once('=') else {
                return Err(fail(format!(
                    "entry {} has no `=`; the format is token=acct1,acct2;token2=*",
                    n + 1
                )));
            };
            let accounts: Vec<&str> = accounts
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .collect();
            tokens
                .add_checked(token.trim(), &accounts, n + 1)
                .map_err(fail)?;
        }
        Ok(tokens)
    }

    /// A TOML or JSON file: `[tokens]` with `"token" = ["acct1"]` or `"token" = "*"`
    /// (JSON: `{"tokens": {"token": ["acct1"]}}`). JSON is tried when the file starts with `{`.
    pub fn load(path: &Path) -> Result<Tokens, TokenError> {
        let origin = path.display().to_string();
        let fail = |message: String| TokenError {
            origin: origin.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let file: TokenFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        let mut tokens = Tokens::default();
        for (n, (token, spec)) in file.tokens.iter().enumerate() {
            let accounts: Vec<&str> = match spec {
                ScopeSpec::One(a) => vec![a.as_str()],
                ScopeSpec::Many(list) => list.iter().map(String::as_str).collect(),
            };
            tokens.add_checked(token, &accounts, n + 1).map_err(fail)?;
        }
        Ok(tokens)
    }

    fn add_checked(&mut self, token: &str, accounts: &[&str], n: usize) -> Result<(), String> {
        if token.len() < 8 {
            return Err(format!("token {n} is shorter than 8 characters"));
        }
        if accounts.is_empty() {
            return Err(format!(
                "token {n} has no accounts; list them or give `*` for all"
            ));
        }
        self.insert(token, accounts);
        Ok(())
    }

    /// Checks `Authorization: Bearer ...`; 401 when tokens are configured and it is missing
    /// or unknown.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Access, ApiError> {
        if self.entries.is_empty() {
            return Ok(Access::Open);
        }
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("an `Authorization: Bearer <token>` header is required"))?;
        let value = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not readable text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let given = digest(token);
        // Every entry is compared in full, so timing says nothing about which one matched.
        let mut found = None;
        for (known, scope) in &self.entries {
            let same = known
                .iter()
                .zip(given.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some(scope.clone());
            }
        }
        found
            .map(Access::Token)
            .ok_or_else(|| unauthorized("the bearer token is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn env_format_and_scopes() {
        let tokens = Tokens::parse_env("secret-one=ws_1, ws_2 ; secret-two=*").unwrap();
        let one = tokens.authenticate(&bearer("secret-one")).unwrap();
        assert!(one.allows(Some("ws_2")));
        assert!(!one.allows(Some("ws_3")));
        assert!(!one.allows(None));
        let two = tokens.authenticate(&bearer("secret-two")).unwrap();
        assert!(two.allows(Some("anything")) && two.allows(None));
        let err = tokens.authenticate(&bearer("nope-nope")).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            tokens.authenticate(&HeaderMap::new()).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(Tokens::parse_env("no-equals-sign").is_err());
        assert!(Tokens::parse_env("short=ws").is_err());
    }

    #[test]
    fn debug_never_shows_a_token() {
        let tokens = Tokens::parse_env("very-secret-token=ws_1").unwrap();
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("ws_1"));
    }

    #[test]
    fn files_in_toml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("t.toml");
        std::fs::write(
            &toml_path,
            "[tokens]\n\"token-aaaa\" = [\"ws_1\"]\n\"token-bbbb\" = \"*\"\n",
        )
        .unwrap();
        let t = Tokens::load(&toml_path).unwrap();
        assert!(
            t.authenticate(&bearer("token-aaaa"))
                .unwrap()
                .allows(Some("ws_1"))
        );
        let json_path = dir.path().join("t.json");
        std::fs::write(&json_path, r#"{"tokens": {"token-cccc": ["ws_9"]}}"#).unwrap();
        let t = Tokens::load(&json_path).unwrap();
        assert!(
            !t.authenticate(&bearer("token-cccc"))
                .unwrap()
                .allows(Some("ws_1"))
        );
        std::fs::write(&json_path, r#"{"tokens": {"token-cccc": 5}}"#).unwrap();
        assert!(Tokens::load(&json_path).is_err());
    }
}
