//! Stripe's `customer` and the postal address it carries.

use serde::{Deserialize, Serialize};

use super::{Discount, Extra, Metadata, TaxExempt, Timestamp};

/// A buyer; checkout creates these on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Stripe's id of the customer, `cus_...`.
    pub id: String,
    /// Always `"customer"`.
    pub object: String,
    /// The customer's email address, where Stripe sends receipts and invoices.
    pub email: Option<String>,
    /// The customer's full name or business name.
    pub name: Option<String>,
    /// A note for the merchant's own eyes.
    pub description: Option<String>,
    /// The customer's phone number.
    pub phone: Option<String>,
    /// The customer's billing address.
    pub address: Option<Address>,
    /// Credit (negative) or debt (positive) in minor units of `currency`.
    #[serde(default)]
    pub balance: i64,
    /// Lower-case ISO code of the currency the customer is billed in for recurring charges; `None`
    /// until set.
    pub currency: Option<String>,
    /// Whether the latest invoice payment failed or is overdue.
    pub delinquent: Option<bool>,
    /// The customer-level discount, if any.
    pub discount: Option<Discount>,
    /// The prefix of the customer's invoice numbers.
    pub invoice_prefix: Option<String>,
    /// Languages for the customer's emails and invoices, most preferred first.
    pub preferred_locales: Option<Vec<String>>,
    /// The customer's tax exemption.
    pub tax_exempt: Option<TaxExempt>,
    /// When the customer was created, unix seconds.
    pub created: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// The merchant's own key-value pairs.
    #[serde(default)]
    pub metadata: Metadata,
    /// Fields this struct does not name (`invoice_settings`, `shipping`...), kept for the round
    /// trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A postal address; Stripe sends every line, `null` when unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// Street, PO box or company name.
    pub line1: Option<String>,
    /// Apartment, suite, unit or building.
    pub line2: Option<String>,
    /// City, district, suburb, town or village.
    pub city: Option<String>,
    /// State, county, province or region.
    pub state: Option<String>,
    /// ZIP or postal code.
    pub postal_code: Option<String>,
    /// Two-letter ISO code.
    pub country: Option<String>,
    /// Fields this struct does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}
