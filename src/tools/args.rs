//! Argument pieces shared by several tools (metadata, discounts, pagination) and the checks
//! that turn a bad value into a message naming the parameter and the fix.

use schemars::JsonSchema;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::error::ToolError;

// Stripe metadata is a string map; it is a list of pairs here because strict function
// calling cannot describe an open-ended map. (A plain comment: the model needn't read it.)
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataEntry {
    pub key: String,
    /// On updates, null removes the key.
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MetadataArg(pub Vec<MetadataEntry>);

impl Serialize for MetadataArg {
    /// Stripe's shape: an object, with `""` for a removed key.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for entry in &self.0 {
            map.serialize_entry(&entry.key, entry.value.as_deref().unwrap_or(""))?;
        }
        map.end()
    }
}

impl MetadataArg {
    pub fn check(&self, param: &str) -> Result<(), ToolError> {
        if self.0.len() > 50 {
            return Err(ToolError::invalid(
                Some(param),
                format!(
                    "`{param}` has {} keys; Stripe allows at most 50",
                    self.0.len()
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for entry in &self.0 {
            let key = entry.key.as_str();
            if key.is_empty() || key.chars().count() > 40 || key.contains(['[', ']']) {
                return Err(ToolError::invalid(
                    Some(param),
                    format!(
                        "`{param}` key `{key}` must be 1 to 40 characters without square brackets"
                    ),
                ));
            }
            if !seen.insert(key) {
                return Err(ToolError::invalid(
                    Some(param),
                    format!("`{param}` key `{key}` is given twice"),
                ));
            }
            if entry
                .value
                .as_ref()
                .is_some_and(|v| v.chars().count() > 500)
            {
                return Err(ToolError::invalid(
                    Some(param),
                    format!("`{param}` value of `{key}` is longer than 500 characters"),
                ));
            }
        }
        Ok(())
    }
}

/// Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountArg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    /// promo_... id, not the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_code: Option<String>,
}

pub fn check_discounts(param: &str, discounts: &[DiscountArg]) -> Result<(), ToolError> {
    for (i, d) in discounts.iter().enumerate() {
        match (&d.coupon, &d.promotion_code) {
            (Some(c), None) => check_id(&format!("{param}[{i}].coupon"), c, &[])?,
            (None, Some(p)) => check_id(&format!("{param}[{i}].promotion_code"), p, &["promo_"])?,
            _ => {
                return Err(ToolError::invalid(
                    Some(param),
                    format!("`{param}[{i}]` needs exactly one of `coupon` or `promotion_code`"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks an object id: not empty, no spaces, at most 255 characters, and one of Stripe's
/// prefixes for that kind of object when Stripe always uses one.
pub fn check_id(param: &str, value: &str, prefixes: &[&str]) -> Result<(), ToolError> {
    if value.trim().is_empty() {
        return Err(ToolError::invalid(
            Some(param),
            format!("`{param}` is empty"),
        ));
    }
    if value.len() > 255 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ToolError::invalid(
            Some(param),
            format!("`{param}` `{value}` is not a Stripe id (no spaces, at most 255 characters)"),
        ));
    }
    if !prefixes.is_empty() && !prefixes.iter().any(|p| value.starts_with(p)) {
        return Err(ToolError::invalid(
            Some(param),
            format!(
                "`{param}` `{value}` is not the right kind of id: it must start with {}",
                prefixes.join(" or ")
            ),
        ));
    }
    Ok(())
}

/// Three-letter ISO currency code; normalised to lower case as Stripe stores it.
pub fn check_currency(param: &str, value: &mut String) -> Result<(), ToolError> {
    if value.len() != 3 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(ToolError::invalid(
            Some(param),
            format!(
                "`{param}` `{value}` is not a three-letter ISO currency code such as `usd` or `eur`"
            ),
        ));
    }
    value.make_ascii_lowercase();
    Ok(())
}

/// Amounts are in the currency's smallest unit and never negative.
pub fn check_amount(param: &str, value: i64) -> Result<(), ToolError> {
    if value < 0 {
        return Err(ToolError::invalid(
            Some(param),
            format!(
                "`{param}` is {value}; amounts are in the smallest currency unit (cents) and cannot be negative"
            ),
        ));
    }
    if value > 99_999_999 {
        return Err(ToolError::invalid(
            Some(param),
            format!(
                "`{param}` is {value}; Stripe's maximum is 99999999 (in the smallest currency unit)"
            ),
        ));
    }
    Ok(())
}

pub fn check_text(param: &str, value: &str, max: usize) -> Result<(), ToolError> {
    if value.trim().is_empty() {
        return Err(ToolError::invalid(
            Some(param),
            format!("`{param}` is empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(ToolError::invalid(
            Some(param),
            format!("`{param}` is longer than {max} characters"),
        ));
    }
    Ok(())
}

/// `limit` must be 1 to 100 (Stripe's range).
pub fn check_limit(limit: Option<u32>) -> Result<(), ToolError> {
    match limit {
        Some(l) if !(1..=100).contains(&l) => Err(ToolError::invalid(
            Some("limit"),
            format!("`limit` is {l}; it must be between 1 and 100"),
        )),
        _ => Ok(()),
    }
}

pub fn check_opt<T>(
    value: &Option<T>,
    check: impl FnOnce(&T) -> Result<(), ToolError>,
) -> Result<(), ToolError> {
    value.as_ref().map_or(Ok(()), check)
}

/// Refuses a retrieve-by-id mixed with list filters, which would silently ignore the filters.
pub fn check_id_alone(id: &Option<String>, filters_given: bool) -> Result<(), ToolError> {
    if id.is_some() && filters_given {
        return Err(ToolError::invalid(
            Some("id"),
            "give either `id` (to fetch one object) or the list filters, not both",
        ));
    }
    Ok(())
}
