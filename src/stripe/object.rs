//! [`StripeObject`]: any JSON a Stripe-shaped API returns, classified by its `object` field.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{
    CheckoutSession, Coupon, Customer, Deleted, Discount, List, Price, Product, PromotionCode,
    Subscription, SubscriptionItem,
};

/// One Stripe object of a known kind, or the raw JSON when the kind is unknown or the object
/// does not parse as its kind. Large variants are boxed to keep the enum small.
#[derive(Debug, Clone, PartialEq)]
pub enum StripeObject {
    /// A `product`.
    Product(Box<Product>),
    /// A `price`.
    Price(Box<Price>),
    /// A `customer`.
    Customer(Box<Customer>),
    /// A `subscription`.
    Subscription(Box<Subscription>),
    /// A `subscription_item`.
    SubscriptionItem(Box<SubscriptionItem>),
    /// A `coupon`.
    Coupon(Box<Coupon>),
    /// A `promotion_code`.
    PromotionCode(Box<PromotionCode>),
    /// A `discount`.
    Discount(Box<Discount>),
    /// A `checkout.session`.
    CheckoutSession(Box<CheckoutSession>),
    /// `list` or `search_result`; each element is classified in turn.
    List(List<StripeObject>),
    /// Any object with `deleted: true` (the answer of a delete call).
    Deleted(Deleted),
    /// Anything else, kept whole so nothing is lost.
    Unknown(Value),
}

impl StripeObject {
    /// Classifies any JSON value; never fails. A known `object` whose body does not parse
    /// (say, a coupon with neither reduction) becomes `Unknown` with the JSON intact; use
    /// [`StripeObject::try_from_value`] to learn why.
    pub fn from_value(value: &Value) -> Self {
        Self::try_from_value(value).unwrap_or_else(|_| Self::Unknown(value.clone()))
    }

    /// Like [`StripeObject::from_value`], but an object of a known kind that fails to parse is
    /// an error naming the problem. Unknown kinds and non-objects are still `Ok(Unknown)`.
    pub fn try_from_value(value: &Value) -> Result<Self, serde_json::Error> {
        let Some(map) = value.as_object() else {
            return Ok(Self::Unknown(value.clone()));
        };
        if map.get("deleted").and_then(Value::as_bool) == Some(true) {
            return parse(value).map(Self::Deleted);
        }
        let Some(kind) = map.get("object").and_then(Value::as_str) else {
            return Ok(Self::Unknown(value.clone()));
        };
        Ok(match kind {
            "product" => Self::Product(parse(value)?),
            "price" => Self::Price(parse(value)?),
            "customer" => Self::Customer(parse(value)?),
            "subscription" => Self::Subscription(parse(value)?),
            "subscription_item" => Self::SubscriptionItem(parse(value)?),
            "coupon" => Self::Coupon(parse(value)?),
            "promotion_code" => Self::PromotionCode(parse(value)?),
            "discount" => Self::Discount(parse(value)?),
            "checkout.session" => Self::CheckoutSession(parse(value)?),
            "list" | "search_result" => Self::List(parse(value)?),
            _ => Self::Unknown(value.clone()),
        })
    }

    /// The object's id; `None` for lists and for unknown JSON without a string `id`.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Product(o) => Some(&o.id),
            Self::Price(o) => Some(&o.id),
            Self::Customer(o) => Some(&o.id),
            Self::Subscription(o) => Some(&o.id),
            Self::SubscriptionItem(o) => Some(&o.id),
            Self::Coupon(o) => Some(&o.id),
            Self::PromotionCode(o) => Some(&o.id),
            Self::Discount(o) => Some(&o.id),
            Self::CheckoutSession(o) => Some(&o.id),
            Self::List(_) => None,
            Self::Deleted(o) => Some(&o.id),
            Self::Unknown(v) => v.get("id").and_then(Value::as_str),
        }
    }

    /// Stripe's `object` string (`product`, `checkout.session`, `list`...). For a deleted
    /// object it is the kind that was deleted (see [`StripeObject::is_deleted`]); for unknown
    /// JSON without a string `object` field it is `"unknown"`.
    pub fn object_name(&self) -> &str {
        match self {
            Self::Product(o) => &o.object,
            Self::Price(o) => &o.object,
            Self::Customer(o) => &o.object,
            Self::Subscription(o) => &o.object,
            Self::SubscriptionItem(o) => &o.object,
            Self::Coupon(o) => &o.object,
            Self::PromotionCode(o) => &o.object,
            Self::Discount(o) => &o.object,
            Self::CheckoutSession(o) => &o.object,
            Self::List(o) => &o.object,
            Self::Deleted(o) => &o.object,
            Self::Unknown(v) => v.get("object").and_then(Value::as_str).unwrap_or("unknown"),
        }
    }

    /// Whether this is Stripe's answer to a delete.
    pub fn is_deleted(&self) -> bool {
        matches!(self, Self::Deleted(_))
    }
}

fn parse<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

impl Serialize for StripeObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Product(o) => o.serialize(serializer),
            Self::Price(o) => o.serialize(serializer),
            Self::Customer(o) => o.serialize(serializer),
            Self::Subscription(o) => o.serialize(serializer),
            Self::SubscriptionItem(o) => o.serialize(serializer),
            Self::Coupon(o) => o.serialize(serializer),
            Self::PromotionCode(o) => o.serialize(serializer),
            Self::Discount(o) => o.serialize(serializer),
            Self::CheckoutSession(o) => o.serialize(serializer),
            Self::List(o) => o.serialize(serializer),
            Self::Deleted(o) => o.serialize(serializer),
            Self::Unknown(v) => v.serialize(serializer),
        }
    }
}

/// Never fails on valid JSON: falls back to `Unknown` like [`StripeObject::from_value`].
impl<'de> Deserialize<'de> for StripeObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Self::from_value(&value))
    }
}

impl From<Value> for StripeObject {
    fn from(value: Value) -> Self {
        Self::from_value(&value)
    }
}
