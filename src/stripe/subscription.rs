//! Stripe's `subscription` and `subscription_item`.

use serde::{Deserialize, Serialize};

use super::{
    CollectionMethod, Customer, Expandable, Extra, List, Metadata, Price, SubscriptionStatus,
    Timestamp,
};

/// A customer's recurring charge for one or more prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub object: String,
    pub customer: Expandable<Customer>,
    pub status: SubscriptionStatus,
    pub items: List<SubscriptionItem>,
    pub currency: String,
    pub collection_method: CollectionMethod,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<Timestamp>,
    pub canceled_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub trial_start: Option<Timestamp>,
    pub trial_end: Option<Timestamp>,
    pub start_date: Timestamp,
    pub description: Option<String>,
    /// Older API versions only (newer ones put the period on each item); omitted stays omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_start: Option<Timestamp>,
    /// Older API versions only, see `current_period_start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<Timestamp>,
    pub created: Timestamp,
    pub livemode: bool,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Subscription {
    /// The current billing period `(start, end)`, wherever this API version put it: on the
    /// subscription (older versions) or else on the first item that has one (newer versions).
    pub fn current_period(&self) -> Option<(Timestamp, Timestamp)> {
        if let (Some(start), Some(end)) = (self.current_period_start, self.current_period_end) {
            return Some((start, end));
        }
        self.items
            .data
            .iter()
            .find_map(|item| Some((item.current_period_start?, item.current_period_end?)))
    }
}

/// One price (and quantity) inside a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionItem {
    pub id: String,
    pub object: String,
    /// Always the full price object in Stripe's answers.
    pub price: Price,
    pub quantity: Option<u64>,
    /// The id of the subscription this item belongs to.
    pub subscription: String,
    /// Newer API versions only (older ones put the period on the subscription).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_start: Option<Timestamp>,
    /// Newer API versions only, see `current_period_start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<Timestamp>,
    pub created: Timestamp,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(flatten)]
    pub extra: Extra,
}
