//! The Altan Pay route table: which HTTP method and path serve each operation.
//! Loaded from `tools/routes.toml` (embedded at build time) or a file given with `--routes`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// The route table shipped with the binary.
pub const DEFAULT_ROUTES_TOML: &str = include_str!("../../tools/routes.toml");

/// Every operation the tools use. A route table must define all of them, and nothing else,
/// so a typo in a custom table is caught when it is loaded rather than at the first call.
pub const OPERATIONS: &[&str] = &[
    "account.stripe_connect_id",
    "products.create",
    "products.list",
    "products.retrieve",
    "products.update",
    "products.delete",
    "prices.create",
    "prices.list",
    "prices.retrieve",
    "prices.update",
    "customers.create",
    "customers.list",
    "customers.retrieve",
    "customers.update",
    "customers.delete",
    "subscriptions.create",
    "subscriptions.list",
    "subscriptions.retrieve",
    "subscriptions.update",
    "subscriptions.cancel",
    "coupons.create",
    "coupons.list",
    "coupons.retrieve",
    "coupons.update",
    "coupons.delete",
    "promotion_codes.create",
    "promotion_codes.list",
    "promotion_codes.retrieve",
    "promotion_codes.update",
    "checkout_sessions.create",
];

/// The placeholders a path may contain.
const PLACEHOLDERS: &[&str] = &["account_id", "id", "stripe_connect_id"];

/// The HTTP method of a route, as written in the route table (`GET`, `POST`, `DELETE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`: reads and lists.
    Get,
    /// `POST`: creates and updates, parameters form-encoded in the body.
    Post,
    /// `DELETE`: removes an object.
    Delete,
}

impl Method {
    /// The method's name on the wire, upper case.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route does to Stripe. Mutations carry an `Idempotency-Key` and are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// Reads or lists; safe to retry without a key, never synced.
    Read,
    /// Creates a Stripe object.
    Create,
    /// Changes an existing Stripe object.
    Update,
    /// Deletes a Stripe object.
    Delete,
}

impl RouteKind {
    /// Whether the route changes Stripe: everything but [`RouteKind::Read`].
    pub fn is_mutation(self) -> bool {
        !matches!(self, RouteKind::Read)
    }
}

/// One operation's route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// Path and optional query, with `{account_id}`, `{id}` and `{stripe_connect_id}`.
    pub path: String,
    /// Read or which mutation; decides the idempotency key and the sync.
    pub kind: RouteKind,
    /// The Stripe `object` the route returns (`product`, `checkout.session`, ...).
    pub object: String,
}

impl Route {
    fn segments(&self) -> (&str, Option<&str>) {
        match self.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (self.path.as_str(), None),
        }
    }

    /// Whether the path needs the given placeholder.
    pub fn uses(&self, placeholder: &str) -> bool {
        self.path.contains(&format!("{{{placeholder}}}"))
    }

    /// Fills the placeholders, percent-encoding each value for its position (path segment or
    /// query value). Fails when a placeholder the path uses has no value.
    pub fn expand(&self, values: &RouteValues<'_>) -> Result<String, RouteError> {
        let (path, query) = self.segments();
        let mut out = String::with_capacity(self.path.len() + 64);
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            expand_part(segment, values, &mut out, encode_path_segment)?;
        }
        if let Some(query) = query {
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                expand_part(pair, values, &mut out, encode_query_value)?;
            }
        }
        Ok(out)
    }

    /// Matches a request path (no query) against this route's path pattern and returns the
    /// decoded placeholder values, or `None` when it does not match. Used by the gateway.
    pub fn match_path(&self, request_path: &str) -> Option<BTreeMap<String, String>> {
        let (pattern, _) = self.segments();
        let want: Vec<&str> = pattern.split('/').collect();
        let got: Vec<&str> = request_path.split('/').collect();
        if want.len() != got.len() {
            return None;
        }
        let mut found = BTreeMap::new();
        for (w, g) in want.iter().zip(&got) {
            match placeholder_name(w) {
                Some(name) => {
                    let value = percent_decode(g)?;
                    if value.is_empty() {
                        return None;
                    }
                    found.insert(name.to_string(), value);
                }
                None if w == g => {}
                None => return None,
            }
        }
        Some(found)
    }

    /// The query parameters the route pattern fixes, as (name, placeholder or literal).
    pub fn query_template(&self) -> Vec<(&str, &str)> {
        let (_, query) = self.segments();
        query
            .map(|q| {
                q.split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Values for a route's placeholders.
#[derive(Debug, Default, Clone, Copy)]
pub struct RouteValues<'a> {
    /// The Altan account the call acts for, for `{account_id}`.
    pub account_id: Option<&'a str>,
    /// The Stripe object's id, for `{id}`.
    pub id: Option<&'a str>,
    /// The account's Stripe Connect id (`acct_...`), for `{stripe_connect_id}`.
    pub stripe_connect_id: Option<&'a str>,
}

impl<'a> RouteValues<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        match name {
            "account_id" => self.account_id,
            "id" => self.id,
            "stripe_connect_id" => self.stripe_connect_id,
            _ => None,
        }
    }
}

fn placeholder_name(part: &str) -> Option<&str> {
    part.strip_prefix('{')?.strip_suffix('}')
}

fn expand_part(
    part: &str,
    values: &RouteValues<'_>,
    out: &mut String,
    encode: fn(&str, &mut String),
) -> Result<(), RouteError> {
    let mut rest = part;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| RouteError::Invalid(format!("unclosed placeholder in `{part}`")))?;
        let name = &after[..end];
        let value = values
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RouteError::MissingValue(name.to_string()))?;
        encode(value, out);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// RFC 3986 unreserved characters pass; everything else is `%XX`.
fn encode_path_segment(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn encode_query_value(value: &str, out: &mut String) {
    encode_path_segment(value, out)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why a route table could not be loaded or a route could not be filled in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// The table cannot be read or is wrong (bad TOML, an operation missing or unknown, a bad
    /// placeholder); the text says which.
    #[error("route table: {0}")]
    Invalid(String),
    /// The route's path uses this placeholder and the call gave no value for it.
    #[error("the route needs a value for `{{{0}}}` and none was given")]
    MissingValue(String),
}

/// The whole table: a base URL and one route per operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// The Altan Pay API's base URL, without a trailing slash; route paths are appended to it.
    pub base_url: String,
    routes: BTreeMap<String, Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    base_url: String,
    routes: BTreeMap<String, Route>,
}

impl RouteTable {
    /// The table embedded in the binary.
    pub fn embedded() -> RouteTable {
        // The embedded table is checked by a unit test, so this cannot fail in a release.
        Self::parse(DEFAULT_ROUTES_TOML).unwrap_or_else(|e| panic!("embedded routes.toml: {e}"))
    }

    /// Reads a table from a TOML file.
    pub fn from_file(path: &Path) -> Result<RouteTable, RouteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RouteError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| match e {
            RouteError::Invalid(m) => RouteError::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and checks a table: every operation present, no unknown ones, only known
    /// placeholders, `{id}` exactly where the operation addresses one object.
    pub fn parse(text: &str) -> Result<RouteTable, RouteError> {
        let raw: RawTable =
            toml::from_str(text).map_err(|e| RouteError::Invalid(e.message().to_string()))?;
        if !(raw.base_url.starts_with("http://") || raw.base_url.starts_with("https://")) {
            return Err(RouteError::Invalid(format!(
                "base_url `{}` must start with http:// or https://",
                raw.base_url
            )));
        }
        for op in raw.routes.keys() {
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(RouteError::Invalid(format!(
                    "unknown operation `{op}` (known: {})",
                    OPERATIONS.join(", ")
                )));
            }
        }
        for op in OPERATIONS {
            let route = raw
                .routes
                .get(*op)
                .ok_or_else(|| RouteError::Invalid(format!("operation `{op}` has no route")))?;
            check_route(op, route)?;
        }
        Ok(RouteTable {
            base_url: raw.base_url.trim_end_matches('/').to_string(),
            routes: raw.routes,
        })
    }

    /// The route of an operation (`products.create`); `None` for a name the table lacks.
    pub fn get(&self, operation: &str) -> Option<&Route> {
        self.routes.get(operation)
    }

    /// All routes, by operation name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A copy pointing at another server (a local gateway, a test server).
    pub fn with_base_url(mut self, base_url: &str) -> RouteTable {
        self.base_url = base_url.trim_end_matches('/').to_string();
        self
    }
}

fn check_route(op: &str, route: &Route) -> Result<(), RouteError> {
    if !route.path.starts_with('/') {
        return Err(RouteError::Invalid(format!(
            "`{op}`: path `{}` must start with /",
            route.path
        )));
    }
    let mut rest = route.path.as_str();
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| {
            RouteError::Invalid(format!("`{op}`: unclosed placeholder in `{}`", route.path))
        })?;
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(RouteError::Invalid(format!(
                "`{op}`: unknown placeholder `{{{name}}}` (known: account_id, id, stripe_connect_id)"
            )));
        }
        rest = &after[end + 1..];
    }
    let addresses_one = op.ends_with(".retrieve")
        || op.ends_with(".update")
        || op.ends_with(".delete")
        || op.ends_with(".cancel");
    if addresses_one != route.uses("id") {
        return Err(RouteError::Invalid(format!(
            "`{op}`: path `{}` {} `{{id}}`",
            route.path,
            if addresses_one {
                "must contain"
            } else {
                "must not contain"
            }
        )));
    }
    if !route.uses("account_id") {
        return Err(RouteError::Invalid(format!(
            "`{op}`: path `{}` must contain `{{account_id}}`",
            route.path
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_is_complete_and_valid() {
        let table = RouteTable::parse(DEFAULT_ROUTES_TOML).expect("embedded table parses");
        assert_eq!(table.iter().count(), OPERATIONS.len());
        assert_eq!(table.base_url, "https://pay.altan.ai");
    }

    #[test]
    fn checkout_route_is_the_public_one() {
        let table = RouteTable::embedded();
        let route = table.get("checkout_sessions.create").unwrap();
        let url = route
            .expand(&RouteValues {
                account_id: Some("acc 1/x"),
                id: None,
                stripe_connect_id: Some("acct_1&a=b"),
            })
            .unwrap();
        assert_eq!(
            url,
            "/v2/connect/checkout/acc%201%2Fx/create_checkout_session?stripe_connect_id=acct_1%26a%3Db"
        );
    }

    #[test]
    fn missing_value_is_named() {
        let table = RouteTable::embedded();
        let route = table.get("products.update").unwrap();
        let err = route
            .expand(&RouteValues {
                account_id: Some("a"),
                id: None,
                stripe_connect_id: Some("acct_1"),
            })
            .unwrap_err();
        assert_eq!(err, RouteError::MissingValue("id".into()));
    }

    #[test]
    fn match_path_decodes_values() {
        let table = RouteTable::embedded();
        let route = table.get("products.update").unwrap();
        let m = route
            .match_path("/v2/connect/products/acc%201/update_product/prod_9")
            .unwrap();
        assert_eq!(m["account_id"], "acc 1");
        assert_eq!(m["id"], "prod_9");
        assert!(
            route
                .match_path("/v2/connect/products/acc/update_product")
                .is_none()
        );
        assert!(
            route
                .match_path("/v2/connect/prices/acc/update_product/x")
                .is_none()
        );
        assert!(
            route
                .match_path("/v2/connect/products/acc/update_product/%ZZ")
                .is_none()
        );
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let missing = DEFAULT_ROUTES_TOML
            .replace("[routes.\"coupons.delete\"]", "[routes.\"coupons.remove\"]");
        let err = RouteTable::parse(&missing).unwrap_err().to_string();
        assert!(err.contains("unknown operation `coupons.remove`"), "{err}");

        let bad_placeholder =
            DEFAULT_ROUTES_TOML.replace("account/{account_id}", "account/{workspace}");
        let err = RouteTable::parse(&bad_placeholder).unwrap_err().to_string();
        assert!(err.contains("unknown placeholder `{workspace}`"), "{err}");

        let bad_base = DEFAULT_ROUTES_TOML.replace("https://pay.altan.ai", "pay.altan.ai");
        let err = RouteTable::parse(&bad_base).unwrap_err().to_string();
        assert!(err.contains("must start with http"), "{err}");

        let bad_method = DEFAULT_ROUTES_TOML.replacen("method = \"GET\"", "method = \"PATCH\"", 1);
        assert!(RouteTable::parse(&bad_method).is_err());
    }
}
