//! Stripe's `product`.

use serde::{Deserialize, Serialize};

use super::{Expandable, Extra, Metadata, Price, Timestamp};

/// Something sold; prices hang off it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub object: String,
    pub active: bool,
    pub name: String,
    pub description: Option<String>,
    pub default_price: Option<Expandable<Price>>,
    #[serde(default)]
    pub images: Vec<String>,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub livemode: bool,
    #[serde(default)]
    pub metadata: Metadata,
    pub url: Option<String>,
    pub unit_label: Option<String>,
    pub statement_descriptor: Option<String>,
    pub shippable: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}
