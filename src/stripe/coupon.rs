//! Stripe's `coupon`, `promotion_code` and `discount`: what a reduction is, the code a buyer
//! types to get it, and the reduction once applied.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::{Customer, DiscountSourceType, Expandable, Extra, Metadata, Timestamp};

/// A reusable reduction. Stripe's flat `percent_off` / `amount_off` / `currency` and
/// `duration` / `duration_in_months` become [`CouponDiscount`] and [`Duration`], so a coupon
/// with both or neither reduction cannot exist here.
///
/// Fields the typed view makes irrelevant are kept verbatim in `extra` so the object
/// round-trips: `currency` on a percent-off coupon, and `duration_in_months` when the
/// duration is not `repeating` (Stripe's own sample has `forever` with 3 months).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CouponRaw", into = "CouponRaw")]
pub struct Coupon {
    /// Chosen by the merchant or generated; also the code used on checkout if no promotion code.
    pub id: String,
    /// Always `"coupon"`.
    pub object: String,
    /// The name buyers see on receipts and invoices.
    pub name: Option<String>,
    /// The reduction: a percentage or an amount in a currency.
    pub discount: CouponDiscount,
    /// How long the reduction lasts once applied.
    pub duration: Duration,
    /// How many times it may be redeemed in all; `None` for no limit.
    pub max_redemptions: Option<u64>,
    /// The last moment it can be redeemed, unix seconds; `None` for no end.
    pub redeem_by: Option<Timestamp>,
    /// How many times it has been redeemed so far.
    pub times_redeemed: u64,
    /// Whether the coupon can still be applied (not expired, not used up, not deleted).
    pub valid: bool,
    /// When the coupon was created, unix seconds.
    pub created: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// Nullable on coupons, unlike most objects.
    pub metadata: Option<Metadata>,
    /// Fields this struct does not name, and the irrelevant flat fields, kept for the round trip.
    pub extra: Extra,
}

/// The reduction a coupon gives: exactly one of a percentage or a fixed amount.
#[derive(Debug, Clone, PartialEq)]
pub enum CouponDiscount {
    /// Percent off the subtotal (`25.5` = 25.5 %).
    PercentOff(f64),
    /// A fixed amount off, in minor units of `currency`.
    AmountOff {
        /// The amount off, in minor units (cents), never negative.
        amount: i64,
        /// Lower-case ISO code of `amount`.
        currency: String,
    },
}

impl CouponDiscount {
    /// The percentage, if this is a percent-off coupon (`25.5` = 25.5 %).
    pub fn percent_off(&self) -> Option<f64> {
        match self {
            Self::PercentOff(p) => Some(*p),
            Self::AmountOff { .. } => None,
        }
    }

    /// `(amount in minor units, currency)`.
    pub fn amount_off(&self) -> Option<(i64, &str)> {
        match self {
            Self::PercentOff(_) => None,
            Self::AmountOff { amount, currency } => Some((*amount, currency)),
        }
    }
}

/// How long a customer keeps the reduction once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duration {
    /// The first invoice only.
    Once,
    /// Every invoice for this many months.
    Repeating {
        /// Stripe's `duration_in_months`.
        months: u32,
    },
    /// Every invoice, as long as the subscription lasts.
    Forever,
    /// A duration this crate does not know yet, kept verbatim.
    Other(String),
}

impl Duration {
    /// The string Stripe uses in `duration`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Once => "once",
            Self::Repeating { .. } => "repeating",
            Self::Forever => "forever",
            Self::Other(s) => s,
        }
    }
}

/// Why a coupon JSON cannot be a [`Coupon`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponError {
    /// Neither `percent_off` nor `amount_off` is set.
    #[error("coupon {id} has neither percent_off nor amount_off; Stripe sets exactly one")]
    NoDiscount {
        /// The coupon's id.
        id: String,
    },
    /// Both `percent_off` and `amount_off` are set.
    #[error("coupon {id} has both percent_off and amount_off; Stripe sets exactly one")]
    BothDiscounts {
        /// The coupon's id.
        id: String,
    },
    /// `amount_off` is set without a `currency` string.
    #[error("coupon {id} has amount_off but no currency string")]
    MissingCurrency {
        /// The coupon's id.
        id: String,
    },
    /// A `repeating` coupon whose `duration_in_months` is not a whole number of months.
    #[error(
        "coupon {id} has duration `repeating` but duration_in_months is {found}, expected a whole number of months"
    )]
    BadMonths {
        /// The coupon's id.
        id: String,
        /// The `duration_in_months` value found, as JSON text, or `missing`.
        found: String,
    },
}

/// Stripe's flat wire shape of a coupon; `currency` and `duration_in_months` stay in `extra`
/// so their absence, `null`, or a stray value survive untouched when irrelevant.
#[derive(Serialize, Deserialize)]
struct CouponRaw {
    id: String,
    object: String,
    name: Option<String>,
    #[serde(serialize_with = "serialize_percent")]
    percent_off: Option<f64>,
    amount_off: Option<i64>,
    duration: String,
    max_redemptions: Option<u64>,
    redeem_by: Option<Timestamp>,
    #[serde(default)]
    times_redeemed: u64,
    valid: bool,
    created: Timestamp,
    livemode: bool,
    metadata: Option<Metadata>,
    #[serde(flatten)]
    extra: Extra,
}

/// JSON has one number type, but `serde_json::Value` tells `20` from `20.0`. Stripe sends whole
/// percentages as integers, so a whole `f64` goes out as an integer to round-trip those.
fn serialize_percent<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(p) if p.fract() == 0.0 && p.abs() < 9.0e15 => serializer.serialize_i64(*p as i64),
        Some(p) => serializer.serialize_f64(*p),
        None => serializer.serialize_none(),
    }
}

impl TryFrom<CouponRaw> for Coupon {
    type Error = CouponError;

    fn try_from(raw: CouponRaw) -> Result<Self, Self::Error> {
        let CouponRaw {
            id,
            object,
            name,
            percent_off,
            amount_off,
            duration,
            max_redemptions,
            redeem_by,
            times_redeemed,
            valid,
            created,
            livemode,
            metadata,
            mut extra,
        } = raw;
        let discount = match (percent_off, amount_off) {
            (Some(percent), None) => CouponDiscount::PercentOff(percent),
            (None, Some(amount)) => match extra.remove("currency") {
                Some(Value::String(currency)) => CouponDiscount::AmountOff { amount, currency },
                _ => return Err(CouponError::MissingCurrency { id }),
            },
            (Some(_), Some(_)) => return Err(CouponError::BothDiscounts { id }),
            (None, None) => return Err(CouponError::NoDiscount { id }),
        };
        let duration = match duration.as_str() {
            "once" => Duration::Once,
            "forever" => Duration::Forever,
            "repeating" => {
                let months = extra.remove("duration_in_months");
                let parsed = months
                    .as_ref()
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok());
                match parsed {
                    Some(months) => Duration::Repeating { months },
                    None => {
                        let found = months.map_or_else(|| "missing".to_owned(), |v| v.to_string());
                        return Err(CouponError::BadMonths { id, found });
                    }
                }
            }
            _ => Duration::Other(duration),
        };
        Ok(Coupon {
            id,
            object,
            name,
            discount,
            duration,
            max_redemptions,
            redeem_by,
            times_redeemed,
            valid,
            created,
            livemode,
            metadata,
            extra,
        })
    }
}

impl From<Coupon> for CouponRaw {
    fn from(coupon: Coupon) -> Self {
        let mut extra = coupon.extra;
        let (percent_off, amount_off) = match coupon.discount {
            CouponDiscount::PercentOff(percent) => (Some(percent), None),
            CouponDiscount::AmountOff { amount, currency } => {
                extra.insert("currency".to_owned(), Value::String(currency));
                (None, Some(amount))
            }
        };
        let duration = match coupon.duration {
            Duration::Repeating { months } => {
                extra.insert("duration_in_months".to_owned(), Value::from(months));
                "repeating".to_owned()
            }
            other => other.as_str().to_owned(),
        };
        CouponRaw {
            id: coupon.id,
            object: coupon.object,
            name: coupon.name,
            percent_off,
            amount_off,
            duration,
            max_redemptions: coupon.max_redemptions,
            redeem_by: coupon.redeem_by,
            times_redeemed: coupon.times_redeemed,
            valid: coupon.valid,
            created: coupon.created,
            livemode: coupon.livemode,
            metadata: coupon.metadata,
            extra,
        }
    }
}

/// A code buyers type at checkout to get a coupon's reduction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionCode {
    /// Stripe's id of the promotion code, `promo_...`.
    pub id: String,
    /// Always `"promotion_code"`.
    pub object: String,
    /// What the buyer types (`FALL20`).
    pub code: String,
    /// Whether buyers can use the code now.
    pub active: bool,
    /// Only this customer may redeem it, when set.
    pub customer: Option<Expandable<Customer>>,
    /// When the code stops working, unix seconds; `None` for no end.
    pub expires_at: Option<Timestamp>,
    /// How many times the code may be redeemed in all; `None` for no limit.
    pub max_redemptions: Option<u64>,
    /// How many times the code has been redeemed so far.
    #[serde(default)]
    pub times_redeemed: u64,
    /// Conditions on who may redeem it and on what order; `None` when Stripe sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrictions: Option<PromotionRestrictions>,
    /// Newer API versions: where the reduction comes from (`promotion.coupon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<DiscountSource>,
    /// Older API versions: the coupon at top level. Use [`PromotionCode::coupon_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<Expandable<Coupon>>,
    /// When the code was created, unix seconds.
    pub created: Timestamp,
    /// `true` in live mode, `false` in test mode.
    pub livemode: bool,
    /// The merchant's own key-value pairs.
    #[serde(default)]
    pub metadata: Metadata,
    /// Fields this struct does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl PromotionCode {
    /// The coupon behind the code, whichever API version's field carries it.
    pub fn coupon_id(&self) -> Option<&str> {
        let newer = self.promotion.as_ref().and_then(|p| p.coupon.as_ref());
        newer.or(self.coupon.as_ref()).map(Expandable::id)
    }
}

/// Who may redeem a promotion code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRestrictions {
    /// Only customers who never paid before may redeem it.
    #[serde(default)]
    pub first_time_transaction: bool,
    /// Minimum order, in minor units of `minimum_amount_currency`.
    pub minimum_amount: Option<i64>,
    /// Lower-case ISO code of `minimum_amount`.
    pub minimum_amount_currency: Option<String>,
    /// Fields this struct does not name (`currency_options`...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where a discount or promotion code gets its reduction (newer API versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscountSource {
    /// What kind of source; today always a coupon.
    pub r#type: DiscountSourceType,
    /// The coupon, `None` only if Stripe left it out.
    pub coupon: Option<Expandable<Coupon>>,
    /// Fields this struct does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A coupon applied to a customer, subscription, invoice or checkout session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discount {
    /// Stripe's id of the discount, `di_...`.
    pub id: String,
    /// Always `"discount"`.
    pub object: String,
    /// The customer it was applied for, if any.
    pub customer: Option<Expandable<Customer>>,
    /// Id of the subscription it applies to.
    pub subscription: Option<String>,
    /// Id of the invoice it applies to (`in_...`), for an invoice-level discount.
    pub invoice: Option<String>,
    /// Id of the checkout session that applied it (`cs_...`).
    pub checkout_session: Option<String>,
    /// The promotion code the buyer typed to get it, if any.
    pub promotion_code: Option<Expandable<PromotionCode>>,
    /// When it was applied, unix seconds.
    pub start: Timestamp,
    /// When it stops applying; `None` for `forever` coupons.
    pub end: Option<Timestamp>,
    /// Newer API versions: `source.coupon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DiscountSource>,
    /// Older API versions: the whole coupon at top level. Use [`Discount::coupon_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<Coupon>,
    /// Fields this struct does not name (`invoice_item`...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Discount {
    /// The applied coupon, whichever API version's field carries it.
    pub fn coupon_id(&self) -> Option<&str> {
        let newer = self.source.as_ref().and_then(|s| s.coupon.as_ref());
        newer
            .map(Expandable::id)
            .or(self.coupon.as_ref().map(|c| c.id.as_str()))
    }
}
