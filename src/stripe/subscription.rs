//! Stripe's `subscription` and `subscription_item`.

use serde::{Deserialize, Serialize};

use super::{
    CollectionMethod, Customer, Expandable, Extra, List, Metadata, Price, SubscriptionStatus,
    Timestamp,
};

/// A customer's recurring charge for one or more prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Stripe's id of the subscription, `sub_...`.
    pub id: String,
    /// Always `"subscription"`.
    pub object: String,
    /// Who pays, `cus_...` or the expanded customer.
    pub customer: Expandable<Customer>,
    /// Where the subscription is in its lifecycle.
    pub status: SubscriptionStatus,
    /// The prices subscribed to, with quantities.
    pub items: List<SubscriptionItem>,
    /// Lower-case ISO code the subscription bills in.
    pub currency: String,
    /// Charge the default payment method, or email an invoice.
    pub collection_method: CollectionMethod,
    /// Whether it ends at the end of the current period instead of renewing.
    pub cancel_at_period_end: bool,
    /// When it is set to end, unix seconds; `None` if not scheduled.
    pub cancel_at: Option<Timestamp>,
    /// When the cancellation was asked, unix seconds; it may end later.
    pub canceled_at: Option<Timestamp>,
    /// When it ended, unix seconds; `None` while it runs.
    pub ended_at: Option<Timestamp>,
    /// Start of the trial, unix seconds; `None` without a trial.
    pub trial_start: Option<Timestamp>,
    /// End of the trial, unix seconds; `None` without a trial.
    pub trial_end: Option<Timestamp>,
    /// When the subscription started, unix seconds (may predate `created` for a backdated one).
    pub start_date: Timestamp,
    /// The merchant's description, meant to be shown to the customer.
    pub description: Option<String>,
    /// Older API versions only (newer ones put the period on each item); omitted stays omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_start: Option<Timestamp>,
    /// Older API versions only, see `current_period_start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<Timestamp>,
    /// When the subscription was created, unix seconds.
    pub created: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// The merchant's own key-value pairs.
    #[serde(default)]
    pub metadata: Metadata,
    /// Fields this struct does not name (`default_payment_method`, `latest_invoice`...), kept for
    /// the round trip.
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
    /// Stripe's id of the item, `si_...`.
    pub id: String,
    /// Always `"subscription_item"`.
    pub object: String,
    /// Always the full price object in Stripe's answers.
    pub price: Price,
    /// How many units of the price; `None` for metered prices.
    pub quantity: Option<u64>,
    /// The id of the subscription this item belongs to.
    pub subscription: String,
    /// Newer API versions only (older ones put the period on the subscription).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_start: Option<Timestamp>,
    /// Newer API versions only, see `current_period_start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_period_end: Option<Timestamp>,
    /// When the item was added, unix seconds.
    pub created: Timestamp,
    /// The merchant's own key-value pairs.
    #[serde(default)]
    pub metadata: Metadata,
    /// Fields this struct does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}
