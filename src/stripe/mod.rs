//! Stripe's objects (product, price, customer, subscription, coupon, promotion code, discount,
//! checkout session, list, deleted, error body) as serde types, and [`StripeObject`] to classify any JSON.

mod checkout;
mod coupon;
mod customer;
mod enums;
mod error;
mod expandable;
mod list;
mod object;
mod price;
mod product;
pub mod signature;
mod subscription;

use std::collections::BTreeMap;

pub use checkout::CheckoutSession;
pub use coupon::{
    Coupon, CouponDiscount, CouponError, Discount, DiscountSource, Duration, PromotionCode,
    PromotionRestrictions,
};
pub use customer::{Address, Customer};
pub use enums::{
    BillingScheme, CheckoutMode, CheckoutStatus, CollectionMethod, DiscountSourceType, ErrorType,
    Interval, PaymentStatus, PriceType, SubscriptionStatus, TaxBehavior, TaxExempt, UsageType,
};
pub use error::{ErrorBody, StripeError};
pub use expandable::{Expandable, json_kind};
pub use list::{Deleted, List};
pub use object::StripeObject;
pub use price::{Price, Recurring};
pub use product::Product;
pub use subscription::{Subscription, SubscriptionItem};

/// Stripe metadata: string keys to string values (Stripe stores nothing else there).
pub type Metadata = BTreeMap<String, String>;

/// Seconds since the Unix epoch, as Stripe sends them.
pub type Timestamp = i64;

/// Fields that Stripe sends but a struct does not name, kept so an object read from Stripe
/// serializes back to the same JSON.
///
/// Conventions that make the round trip hold: a field Stripe always sends but may be `null`
/// is an `Option` that serializes as `null`; a field only some API versions send is an
/// `Option` skipped when `None`; everything else lands here. A nullable field *missing* from
/// the input comes back as `null`, which Stripe's own objects never notice.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// Objects that carry a Stripe id, so [`Expandable::id`] works whether or not it was expanded.
pub trait HasId {
    /// The Stripe id (`prod_...`, `price_...`, a coupon's own code...).
    fn id(&self) -> &str;
}

macro_rules! impl_has_id {
    ($($ty:ty),+ $(,)?) => {
        $(impl HasId for $ty {
            fn id(&self) -> &str {
                &self.id
            }
        })+
    };
}

impl_has_id!(
    Product,
    Price,
    Customer,
    Subscription,
    SubscriptionItem,
    Coupon,
    PromotionCode,
    Discount,
    CheckoutSession,
    Deleted,
);
