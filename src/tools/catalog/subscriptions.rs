//! Subscription tools: create, list or fetch, update, cancel.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{require_change, skip};
use crate::tools::PayTool;
use crate::tools::args::{
    DiscountArg, Metadata, check_discounts, check_id, check_id_alone, check_limit, check_opt,
};
use crate::tools::error::ToolError;

/// A price to subscribe to.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionItemArg {
    /// Recurring price id (price_...).
    pub price: String,
    /// Default 1.
    #[serde(default, skip_serializing_if = "skip")]
    pub quantity: Option<u32>,
}

/// How an invoice is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMethod {
    ChargeAutomatically,
    SendInvoice,
}

/// Subscribe an existing customer to one or more recurring prices.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionArgs {
    /// Customer id (cus_...); create the customer first if there is none.
    pub customer: String,
    /// At least one item; prices must be recurring and active.
    pub items: Vec<SubscriptionItemArg>,
    /// Coupon or promotion code to apply.
    #[serde(default, skip_serializing_if = "skip")]
    pub discounts: Option<Vec<DiscountArg>>,
    /// Free trial length in days.
    #[serde(default, skip_serializing_if = "skip")]
    pub trial_period_days: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub collection_method: Option<CollectionMethod>,
    /// Days to pay an invoice; only with collection_method send_invoice.
    #[serde(default, skip_serializing_if = "skip")]
    pub days_until_due: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

fn check_items(items: &[SubscriptionItemArg]) -> Result<(), ToolError> {
    if items.is_empty() || items.len() > 20 {
        return Err(ToolError::invalid(
            Some("items"),
            "`items` needs 1 to 20 prices",
        ));
    }
    for (i, item) in items.iter().enumerate() {
        check_id(
            &format!("items[{i}].price"),
            &item.price,
            &["price_", "plan_"],
        )?;
        if item.quantity == Some(0) {
            return Err(ToolError::invalid(
                Some("items"),
                format!("`items[{i}].quantity` must be at least 1"),
            ));
        }
    }
    Ok(())
}

pub struct CreateSubscription;
impl PayTool for CreateSubscription {
    const NAME: &'static str = "create_subscription";
    type Args = CreateSubscriptionArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "subscriptions.create"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("customer", &a.customer, &["cus_"])?;
        check_items(&a.items)?;
        check_opt(&a.discounts, |d| check_discounts("discounts", d))?;
        if a.days_until_due.is_some() && a.collection_method != Some(CollectionMethod::SendInvoice)
        {
            return Err(ToolError::invalid(
                Some("days_until_due"),
                "`days_until_due` is only allowed with collection_method send_invoice",
            ));
        }
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// Subscription status filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    PastDue,
    Unpaid,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Trialing,
    Paused,
    Ended,
    All,
}

/// List subscriptions, newest first (canceled ones only with status canceled or all), as
/// whole objects with has_more; or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSubscriptionsArgs {
    /// Fetch this one subscription (sub_...) instead of listing.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Only this customer's (cus_...).
    #[serde(default, skip_serializing_if = "skip")]
    pub customer: Option<String>,
    /// Only those with this price (price_...).
    #[serde(default, skip_serializing_if = "skip")]
    pub price: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub status: Option<SubscriptionStatus>,
    /// 1 to 100, default 10.
    #[serde(default, skip_serializing_if = "skip")]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[serde(default, skip_serializing_if = "skip")]
    pub starting_after: Option<String>,
}

pub struct GetSubscriptions;
impl PayTool for GetSubscriptions {
    const NAME: &'static str = "get_subscriptions";
    type Args = GetSubscriptionsArgs;
    fn operation(a: &Self::Args) -> &'static str {
        if a.id.is_some() {
            "subscriptions.retrieve"
        } else {
            "subscriptions.list"
        }
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_opt(&a.id, |id| check_id("id", id, &["sub_"]))?;
        check_opt(&a.customer, |c| check_id("customer", c, &["cus_"]))?;
        check_opt(&a.price, |p| check_id("price", p, &["price_", "plan_"]))?;
        check_id_alone(
            &a.id,
            a.customer.is_some()
                || a.price.is_some()
                || a.status.is_some()
                || a.limit.is_some()
                || a.starting_after.is_some(),
        )?;
        check_limit(a.limit)
    }
}

/// A change to one item of a subscription.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionItemUpdateArg {
    /// Existing item id (si_...) to change or remove; null to add a new item.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Recurring price id (price_...): required for a new item, or to switch an item's price.
    #[serde(default, skip_serializing_if = "skip")]
    pub price: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub quantity: Option<u32>,
    /// true removes the item.
    #[serde(default, skip_serializing_if = "skip")]
    pub deleted: Option<bool>,
}

/// How to bill a mid-period change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProrationBehavior {
    CreateProrations,
    None,
    AlwaysInvoice,
}

/// Change a subscription: items, discounts (apply a coupon or promotion code), metadata,
/// cancel at period end. Verify it first with get_subscriptions. A canceled subscription
/// cannot change.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriptionArgs {
    /// Subscription id (sub_...) from a Stripe result.
    pub id: String,
    /// Items to add, change or remove; items not listed stay.
    #[serde(default, skip_serializing_if = "skip")]
    pub items: Option<Vec<SubscriptionItemUpdateArg>>,
    /// Replaces the discounts; an empty list removes them.
    #[serde(default, skip_serializing_if = "skip")]
    pub discounts: Option<Vec<DiscountArg>>,
    /// true cancels at the end of the current period.
    #[serde(default, skip_serializing_if = "skip")]
    pub cancel_at_period_end: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub proration_behavior: Option<ProrationBehavior>,
    /// Merged into the existing metadata.
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

pub struct UpdateSubscription;
impl PayTool for UpdateSubscription {
    const NAME: &'static str = "update_subscription";
    type Args = UpdateSubscriptionArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "subscriptions.update"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["sub_"])?;
        if let Some(items) = &a.items {
            for (i, item) in items.iter().enumerate() {
                check_opt(&item.id, |id| {
                    check_id(&format!("items[{i}].id"), id, &["si_"])
                })?;
                check_opt(&item.price, |p| {
                    check_id(&format!("items[{i}].price"), p, &["price_", "plan_"])
                })?;
                if item.id.is_none() && item.price.is_none() {
                    return Err(ToolError::invalid(
                        Some("items"),
                        format!("`items[{i}]` needs `price` to add an item, or `id` to change one"),
                    ));
                }
            }
        }
        check_opt(&a.discounts, |d| check_discounts("discounts", d))?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        require_change(
            Self::NAME,
            a.items.is_some()
                || a.discounts.is_some()
                || a.cancel_at_period_end.is_some()
                || a.proration_behavior.is_some()
                || a.metadata.is_some(),
        )
    }
}

/// Cancel a subscription at once. Destructive: only when the user asked for it. To cancel
/// at the end of the period instead, use update_subscription cancel_at_period_end=true.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscriptionArgs {
    /// Subscription id (sub_...) from a Stripe result.
    pub id: String,
    /// Invoice pending usage and prorations now.
    #[serde(default, skip_serializing_if = "skip")]
    pub invoice_now: Option<bool>,
    /// Credit the unused time.
    #[serde(default, skip_serializing_if = "skip")]
    pub prorate: Option<bool>,
}

pub struct CancelSubscription;
impl PayTool for CancelSubscription {
    const NAME: &'static str = "cancel_subscription";
    type Args = CancelSubscriptionArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "subscriptions.cancel"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["sub_"])
    }
}
