//! Stripe's `checkout.session`.

use serde::{Deserialize, Serialize};

use super::{
    CheckoutMode, CheckoutStatus, Customer, Expandable, Extra, Metadata, PaymentStatus,
    Subscription, Timestamp,
};

/// A hosted payment page; the only Altan Pay route that is public creates these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub object: String,
    pub mode: CheckoutMode,
    pub status: Option<CheckoutStatus>,
    pub payment_status: PaymentStatus,
    /// The page to send the buyer to; `None` once the session is complete or expired.
    pub url: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    /// Set once checkout created or reused a customer.
    pub customer: Option<Expandable<Customer>>,
    pub customer_email: Option<String>,
    pub client_reference_id: Option<String>,
    /// Set once a `subscription`-mode session completes.
    pub subscription: Option<Expandable<Subscription>>,
    /// Minor units of `currency`.
    pub amount_subtotal: Option<i64>,
    /// Minor units of `currency`.
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub created: Timestamp,
    pub expires_at: Timestamp,
    pub livemode: bool,
    /// Nullable on checkout sessions, unlike most objects.
    pub metadata: Option<Metadata>,
    #[serde(flatten)]
    pub extra: Extra,
}
