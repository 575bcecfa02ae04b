//! Stripe's string enums. Each has an `Other(String)` variant so a value Stripe adds later
//! parses and serializes back unchanged instead of failing the whole object.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $value:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        ///
        /// Build it with `From<&str>` so a known value never ends up in `Other`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this crate does not know yet, kept verbatim.
            Other(String),
        }

        impl $name {
            /// The string Stripe uses for this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $value,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($value => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($value => Self::$variant,)+
                    _ => Self::Other(s),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }
    };
}

string_enum! {
    /// How often a recurring price bills.
    Interval { Day => "day", Week => "week", Month => "month", Year => "year" }
}

string_enum! {
    /// Whether a recurring price charges for a fixed quantity or for reported usage.
    UsageType { Licensed => "licensed", Metered => "metered" }
}

string_enum! {
    /// One-time or recurring price (Stripe's `price.type`).
    PriceType { OneTime => "one_time", Recurring => "recurring" }
}

string_enum! {
    /// How a price computes the amount: one unit amount, or tiers.
    BillingScheme { PerUnit => "per_unit", Tiered => "tiered" }
}

string_enum! {
    /// Whether a price includes tax.
    TaxBehavior { Exclusive => "exclusive", Inclusive => "inclusive", Unspecified => "unspecified" }
}

string_enum! {
    /// A customer's tax exemption.
    TaxExempt { None => "none", Exempt => "exempt", Reverse => "reverse" }
}

string_enum! {
    /// A subscription's lifecycle state; Stripe changes it on its own (payments, trials).
    SubscriptionStatus {
        Incomplete => "incomplete",
        IncompleteExpired => "incomplete_expired",
        Trialing => "trialing",
        Active => "active",
        PastDue => "past_due",
        Canceled => "canceled",
        Unpaid => "unpaid",
        Paused => "paused",
    }
}

string_enum! {
    /// Whether Stripe charges the default payment method or emails an invoice.
    CollectionMethod { ChargeAutomatically => "charge_automatically", SendInvoice => "send_invoice" }
}

string_enum! {
    /// What a checkout session sells: a payment, a saved payment method, or a subscription.
    CheckoutMode { Payment => "payment", Setup => "setup", Subscription => "subscription" }
}

string_enum! {
    /// Whether a checkout session can still be completed.
    CheckoutStatus { Open => "open", Complete => "complete", Expired => "expired" }
}

string_enum! {
    /// Whether the money of a checkout session has been collected.
    PaymentStatus { Paid => "paid", Unpaid => "unpaid", NoPaymentRequired => "no_payment_required" }
}

string_enum! {
    /// What a discount or promotion code draws its reduction from (today only coupons).
    DiscountSourceType { Coupon => "coupon" }
}

string_enum! {
    /// The `error.type` of a Stripe error body; decides whether a retry can help.
    ErrorType {
        ApiError => "api_error",
        CardError => "card_error",
        IdempotencyError => "idempotency_error",
        InvalidRequestError => "invalid_request_error",
        AuthenticationError => "authentication_error",
        RateLimitError => "rate_limit_error",
        PermissionError => "permission_error",
    }
}
