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
    Interval {
        /// Every day (`day`).
        Day => "day",
        /// Every week (`week`).
        Week => "week",
        /// Every month (`month`).
        Month => "month",
        /// Every year (`year`).
        Year => "year",
    }
}

string_enum! {
    /// Whether a recurring price charges for a fixed quantity or for reported usage.
    UsageType {
        /// A fixed quantity billed each cycle, set on the subscription item (`licensed`).
        Licensed => "licensed",
        /// Billed on the usage reported during the cycle (`metered`).
        Metered => "metered",
    }
}

string_enum! {
    /// One-time or recurring price (Stripe's `price.type`).
    PriceType {
        /// Charged once, as in a `payment`-mode checkout (`one_time`).
        OneTime => "one_time",
        /// Charged every cycle of its `recurring` part (`recurring`).
        Recurring => "recurring",
    }
}

string_enum! {
    /// How a price computes the amount: one unit amount, or tiers.
    BillingScheme {
        /// `unit_amount` times the quantity (`per_unit`).
        PerUnit => "per_unit",
        /// The price's tiers decide the amount per quantity (`tiered`).
        Tiered => "tiered",
    }
}

string_enum! {
    /// Whether a price includes tax.
    TaxBehavior {
        /// Tax is added on top of the price (`exclusive`).
        Exclusive => "exclusive",
        /// The price already contains the tax (`inclusive`).
        Inclusive => "inclusive",
        /// Not chosen yet; it can be set once to inclusive or exclusive (`unspecified`).
        Unspecified => "unspecified",
    }
}

string_enum! {
    /// A customer's tax exemption.
    TaxExempt {
        /// The customer pays tax normally (`none`).
        None => "none",
        /// The customer is exempt; invoices show no tax (`exempt`).
        Exempt => "exempt",
        /// The customer accounts for the tax under reverse charge (`reverse`).
        Reverse => "reverse",
    }
}

string_enum! {
    /// A subscription's lifecycle state; Stripe changes it on its own (payments, trials).
    SubscriptionStatus {
        /// The first payment has not succeeded yet (`incomplete`).
        Incomplete => "incomplete",
        /// The first payment never succeeded within 23 hours; final (`incomplete_expired`).
        IncompleteExpired => "incomplete_expired",
        /// In a free trial (`trialing`).
        Trialing => "trialing",
        /// Paid up and running (`active`).
        Active => "active",
        /// The latest renewal payment failed and Stripe is retrying (`past_due`).
        PastDue => "past_due",
        /// Ended; final (`canceled`).
        Canceled => "canceled",
        /// Retries ran out; invoices stay open and unpaid (`unpaid`).
        Unpaid => "unpaid",
        /// A trial ended without a payment method; no invoices are made (`paused`).
        Paused => "paused",
    }
}

string_enum! {
    /// Whether Stripe charges the default payment method or emails an invoice.
    CollectionMethod {
        /// Stripe charges the customer's default payment method (`charge_automatically`).
        ChargeAutomatically => "charge_automatically",
        /// Stripe emails an invoice for the customer to pay (`send_invoice`).
        SendInvoice => "send_invoice",
    }
}

string_enum! {
    /// What a checkout session sells: a payment, a saved payment method, or a subscription.
    CheckoutMode {
        /// One-time prices paid once (`payment`).
        Payment => "payment",
        /// Only saves a payment method for later (`setup`).
        Setup => "setup",
        /// Starts a subscription on recurring prices (`subscription`).
        Subscription => "subscription",
    }
}

string_enum! {
    /// Whether a checkout session can still be completed.
    CheckoutStatus {
        /// The buyer can still pay on its `url` (`open`).
        Open => "open",
        /// The buyer finished checkout (`complete`).
        Complete => "complete",
        /// Expired or was expired on purpose; can no longer be used (`expired`).
        Expired => "expired",
    }
}

string_enum! {
    /// Whether the money of a checkout session has been collected.
    PaymentStatus {
        /// The money was collected (`paid`).
        Paid => "paid",
        /// Nothing collected yet (`unpaid`).
        Unpaid => "unpaid",
        /// Nothing to collect: a free order, a trial or a setup session (`no_payment_required`).
        NoPaymentRequired => "no_payment_required",
    }
}

string_enum! {
    /// What a discount or promotion code draws its reduction from (today only coupons).
    DiscountSourceType {
        /// A coupon (`coupon`).
        Coupon => "coupon",
    }
}

string_enum! {
    /// The `error.type` of a Stripe error body; decides whether a retry can help.
    ErrorType {
        /// Stripe's own fault; a retry may pass (`api_error`).
        ApiError => "api_error",
        /// The card was declined or could not be charged (`card_error`).
        CardError => "card_error",
        /// An idempotency key was reused with different parameters (`idempotency_error`).
        IdempotencyError => "idempotency_error",
        /// The request's parameters are wrong; a retry as is fails again (`invalid_request_error`).
        InvalidRequestError => "invalid_request_error",
        /// The API key is missing or wrong (`authentication_error`).
        AuthenticationError => "authentication_error",
        /// Too many requests; retry later (`rate_limit_error`).
        RateLimitError => "rate_limit_error",
        /// The key may not do this (`permission_error`).
        PermissionError => "permission_error",
    }
}
