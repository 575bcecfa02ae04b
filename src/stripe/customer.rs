//! Stripe's `customer` and the postal address it carries.

use serde::{Deserialize, Serialize};

use super::{Discount, Extra, Metadata, TaxExempt, Timestamp};

/// A buyer; checkout creates these on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub object: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    /// Credit (negative) or debt (positive) in minor units of `currency`.
    #[serde(default)]
    pub balance: i64,
    pub currency: Option<String>,
    pub delinquent: Option<bool>,
    /// The customer-level discount, if any.
    pub discount: Option<Discount>,
    pub invoice_prefix: Option<String>,
    pub preferred_locales: Option<Vec<String>>,
    pub tax_exempt: Option<TaxExempt>,
    pub created: Timestamp,
    pub livemode: bool,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A postal address; Stripe sends every line, `null` when unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    /// Two-letter ISO code.
    pub country: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
