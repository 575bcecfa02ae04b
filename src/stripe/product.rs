//! Stripe's `product`.

use serde::{Deserialize, Serialize};

use super::{Expandable, Extra, Metadata, Price, Timestamp};

/// Something sold; prices hang off it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Stripe's id of the product, `prod_...`.
    pub id: String,
    /// Always `"product"`.
    pub object: String,
    /// Whether it can be sold; an archived product is `false`.
    pub active: bool,
    /// The name buyers see at checkout and on invoices.
    pub name: String,
    /// Longer text buyers may see; `None` when unset.
    pub description: Option<String>,
    /// The price checkout and the dashboard use by default, `price_...` or expanded.
    pub default_price: Option<Expandable<Price>>,
    /// Up to eight image URLs shown to buyers.
    #[serde(default)]
    pub images: Vec<String>,
    /// When the product was created, unix seconds.
    pub created: Timestamp,
    /// When the product last changed, unix seconds.
    pub updated: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// The merchant's own key-value pairs.
    #[serde(default)]
    pub metadata: Metadata,
    /// A public page about the product, if the merchant gave one.
    pub url: Option<String>,
    /// What one unit is called on receipts and invoices (`seat`), for per-unit prices.
    pub unit_label: Option<String>,
    /// The text on the buyer's card statement for this product.
    pub statement_descriptor: Option<String>,
    /// Whether it is a physical good to ship; `None` for services.
    pub shippable: Option<bool>,
    /// Fields this struct does not name (`marketing_features`, `tax_code`...), kept for the round
    /// trip.
    #[serde(flatten)]
    pub extra: Extra,
}
