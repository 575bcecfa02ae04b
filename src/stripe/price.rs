//! Stripe's `price` and its `recurring` part.

use serde::{Deserialize, Serialize};

use super::{
    BillingScheme, Expandable, Extra, Interval, Metadata, PriceType, Product, TaxBehavior,
    Timestamp, UsageType,
};

/// How much and how often a product costs. Tiers are left in `extra` (not needed here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub id: String,
    pub object: String,
    pub active: bool,
    /// Lower-case ISO code (`usd`).
    pub currency: String,
    pub product: Expandable<Product>,
    /// Minor units (cents); `None` for tiered or customer-chosen prices.
    pub unit_amount: Option<i64>,
    /// The same amount as a decimal string, which can carry sub-cent precision.
    pub unit_amount_decimal: Option<String>,
    pub r#type: PriceType,
    /// Set exactly when `type` is `recurring`.
    pub recurring: Option<Recurring>,
    pub billing_scheme: BillingScheme,
    pub tax_behavior: Option<TaxBehavior>,
    pub lookup_key: Option<String>,
    pub nickname: Option<String>,
    pub created: Timestamp,
    pub livemode: bool,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The billing cycle of a recurring price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recurring {
    pub interval: Interval,
    /// Number of intervals per cycle (3 with `month` = quarterly).
    pub interval_count: u64,
    /// Optional only because older payloads may omit it; omitted stays omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_type: Option<UsageType>,
    pub trial_period_days: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}
