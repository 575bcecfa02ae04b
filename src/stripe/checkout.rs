//! Stripe's `checkout.session`.

use serde::{Deserialize, Serialize};

use super::{
    CheckoutMode, CheckoutStatus, Customer, Expandable, Extra, Metadata, PaymentStatus,
    Subscription, Timestamp,
};

/// A hosted payment page; the only Altan Pay route that is public creates these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutSession {
    /// Stripe's id of the session, `cs_...`.
    pub id: String,
    /// Always `"checkout.session"`.
    pub object: String,
    /// What the session sells: a payment, a setup or a subscription.
    pub mode: CheckoutMode,
    /// Open, complete or expired; `None` in older payloads.
    pub status: Option<CheckoutStatus>,
    /// Whether the money was collected; the field to check before fulfilling an order.
    pub payment_status: PaymentStatus,
    /// The page to send the buyer to; `None` once the session is complete or expired.
    pub url: Option<String>,
    /// Where Stripe sends the buyer after a successful payment.
    pub success_url: Option<String>,
    /// Where Stripe sends the buyer who goes back.
    pub cancel_url: Option<String>,
    /// Set once checkout created or reused a customer.
    pub customer: Option<Expandable<Customer>>,
    /// The email the session was created with or the buyer typed.
    pub customer_email: Option<String>,
    /// The caller's own reference (a cart or user id), given when the session was created.
    pub client_reference_id: Option<String>,
    /// Set once a `subscription`-mode session completes.
    pub subscription: Option<Expandable<Subscription>>,
    /// Minor units of `currency`.
    pub amount_subtotal: Option<i64>,
    /// Minor units of `currency`.
    pub amount_total: Option<i64>,
    /// Lower-case ISO code of the amounts.
    pub currency: Option<String>,
    /// When the session was created, unix seconds.
    pub created: Timestamp,
    /// When the session expires if not completed, unix seconds.
    pub expires_at: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// Nullable on checkout sessions, unlike most objects.
    pub metadata: Option<Metadata>,
    /// Fields this struct does not name (`line_items`, `total_details`...), kept for the round
    /// trip.
    #[serde(flatten)]
    pub extra: Extra,
}
