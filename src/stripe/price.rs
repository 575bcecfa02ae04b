//! Stripe's `price` and its `recurring` part.

use serde::{Deserialize, Serialize};

use super::{
    BillingScheme, Expandable, Extra, Interval, Metadata, PriceType, Product, TaxBehavior,
    Timestamp, UsageType,
};

/// How much and how often a product costs. Tiers are left in `extra` (not needed here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Stripe's id of the price, `price_...`.
    pub id: String,
    /// Always `"price"`.
    pub object: String,
    /// Whether new purchases may use it; Stripe never deletes a used price, it archives it.
    pub active: bool,
    /// Lower-case ISO code (`usd`).
    pub currency: String,
    /// The product this price belongs to, `prod_...` or the expanded product.
    pub product: Expandable<Product>,
    /// Minor units (cents); `None` for tiered or customer-chosen prices.
    pub unit_amount: Option<i64>,
    /// The same amount as a decimal string, which can carry sub-cent precision.
    pub unit_amount_decimal: Option<String>,
    /// One-time or recurring; decides which checkout mode accepts it.
    pub r#type: PriceType,
    /// Set exactly when `type` is `recurring`.
    pub recurring: Option<Recurring>,
    /// Per-unit amount or tiers.
    pub billing_scheme: BillingScheme,
    /// Whether `unit_amount` includes tax; `None` when never set.
    pub tax_behavior: Option<TaxBehavior>,
    /// A merchant-chosen key to look the price up by instead of its id.
    pub lookup_key: Option<String>,
    /// A name for the merchant's own eyes, never shown to buyers.
    pub nickname: Option<String>,
    /// When the price was created, unix seconds.
    pub created: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// The merchant's own key-value pairs.
    #[serde(default)]
    pub metadata: Metadata,
    /// Fields this struct does not name (tiers, `currency_options`...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The billing cycle of a recurring price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recurring {
    /// The unit of the billing cycle.
    pub interval: Interval,
    /// Number of intervals per cycle (3 with `month` = quarterly).
    pub interval_count: u64,
    /// Optional only because older payloads may omit it; omitted stays omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_type: Option<UsageType>,
    /// Free days before the first charge of a subscription started on this price.
    pub trial_period_days: Option<u64>,
    /// Fields this struct does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}
