//! Subscription tools: create, list or fetch, update, cancel.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::customers::GetCustomers;
use super::skip;
use crate::sync::ObjectKind;
use crate::tools::args::{
    DiscountArg, MetadataArg, check_discounts, check_id, check_id_alone, check_limit, check_opt,
};
use crate::tools::error::ToolError;
use crate::tools::{ArgDestroys, DestructiveEffect, Facts, PayTool};

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionItemArg {
    /// A recurring price.
    pub(crate) price: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) quantity: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CollectionMethod {
    ChargeAutomatically,
    SendInvoice,
}

/// Subscribe an existing customer to one or more recurring prices.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateSubscriptionArgs {
    /// An existing customer (cus_...).
    pub(crate) customer: String,
    /// Recurring, active prices.
    pub(crate) items: Vec<SubscriptionItemArg>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) discounts: Option<Vec<DiscountArg>>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) trial_period_days: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) collection_method: Option<CollectionMethod>,
    /// Only with send_invoice.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) days_until_due: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
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

pub(crate) struct CreateSubscription;
impl PayTool for CreateSubscription {
    const NAME: &'static str = "create_subscription";
    type Args = CreateSubscriptionArgs;
    const FACTS: Facts<Self::Args> = Facts::create(
        &["subscriptions.create"],
        Some(ObjectKind::Subscription),
    )
    .verifies("customer", ObjectKind::Customer, GetCustomers::NAME);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SubscriptionStatus {
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

/// List subscriptions (newest first; canceled ones only with status canceled or all) or
/// fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetSubscriptionsArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) customer: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) price: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) status: Option<SubscriptionStatus>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) limit: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) starting_after: Option<String>,
}

pub(crate) struct GetSubscriptions;
impl PayTool for GetSubscriptions {
    const NAME: &'static str = "get_subscriptions";
    type Args = GetSubscriptionsArgs;
    const FACTS: Facts<Self::Args> = Facts::read(&["subscriptions.list", "subscriptions.retrieve"]);
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

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionItemUpdateArg {
    /// si_... to change or remove; null adds an item.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    /// For a new item, or to switch its price.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) price: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) quantity: Option<u32>,
    /// true removes the item.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) deleted: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProrationBehavior {
    CreateProrations,
    None,
    AlwaysInvoice,
}

/// Change a subscription; a canceled one cannot change.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateSubscriptionArgs {
    pub(crate) id: String,
    /// Items to add, change or remove; others stay.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) items: Option<Vec<SubscriptionItemUpdateArg>>,
    /// Replaces them; an empty list removes them.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) discounts: Option<Vec<DiscountArg>>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) cancel_at_period_end: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) proration_behavior: Option<ProrationBehavior>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

pub(crate) struct UpdateSubscription;
impl PayTool for UpdateSubscription {
    const NAME: &'static str = "update_subscription";
    type Args = UpdateSubscriptionArgs;
    const FACTS: Facts<Self::Args> = Facts::update(
        &["subscriptions.update"],
        ObjectKind::Subscription,
        GetSubscriptions::NAME,
    )
    .destroys_when(&[
        ArgDestroys {
            param: "cancel_at_period_end",
            effect: DestructiveEffect::Cancel,
            test: |a| a.cancel_at_period_end == Some(true),
        },
        ArgDestroys {
            param: "items",
            effect: DestructiveEffect::Delete,
            test: |a| a.items.iter().flatten().any(|i| i.deleted == Some(true)),
        },
    ]);
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
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// Cancel a subscription now (destructive). To end it at the period end, use
/// update_subscription cancel_at_period_end.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelSubscriptionArgs {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) invoice_now: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) prorate: Option<bool>,
}

pub(crate) struct CancelSubscription;
impl PayTool for CancelSubscription {
    const NAME: &'static str = "cancel_subscription";
    type Args = CancelSubscriptionArgs;
    const FACTS: Facts<Self::Args> = Facts::cancel(
        &["subscriptions.cancel"],
        ObjectKind::Subscription,
        GetSubscriptions::NAME,
    );
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["sub_"])
    }
}
