//! The checkout tool: a hosted Stripe Checkout page for prices.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::skip;
use crate::tools::args::{DiscountArg, MetadataArg, check_discounts, check_id, check_opt};
use crate::tools::error::ToolError;
use crate::tools::{Facts, PayTool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckoutMode {
    Payment,
    Subscription,
    Setup,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineItemArg {
    pub(crate) price: String,
    pub(crate) quantity: u32,
}

/// Create a Checkout session; returns its payment page url. Stripe then creates the customer
/// (and the subscription in subscription mode) itself.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCheckoutSessionArgs {
    pub(crate) mode: CheckoutMode,
    pub(crate) line_items: Vec<LineItemArg>,
    pub(crate) success_url: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) cancel_url: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) customer: Option<String>,
    /// Prefill when there is no customer.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) discounts: Option<Vec<DiscountArg>>,
    /// Not with discounts.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) allow_promotion_codes: Option<bool>,
    /// E.g. the app's user id.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) client_reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

fn check_url(param: &str, url: &str) -> Result<(), ToolError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ToolError::invalid(
            Some(param),
            format!("`{param}` `{url}` must be an absolute http(s) URL"),
        ))
    }
}

pub(crate) struct CreateCheckoutSession;
impl PayTool for CreateCheckoutSession {
    const NAME: &'static str = "create_checkout_session";
    type Args = CreateCheckoutSessionArgs;
    const FACTS: Facts<Self::Args> = Facts::create(&["checkout_sessions.create"], None);
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        match a.mode {
            CheckoutMode::Setup if !a.line_items.is_empty() => {
                return Err(ToolError::invalid(
                    Some("line_items"),
                    "setup mode takes no `line_items`",
                ));
            }
            CheckoutMode::Payment | CheckoutMode::Subscription if a.line_items.is_empty() => {
                return Err(ToolError::invalid(
                    Some("line_items"),
                    "`line_items` needs at least one price in payment and subscription mode",
                ));
            }
            _ => {}
        }
        for (i, item) in a.line_items.iter().enumerate() {
            check_id(
                &format!("line_items[{i}].price"),
                &item.price,
                &["price_", "plan_"],
            )?;
            if item.quantity == 0 {
                return Err(ToolError::invalid(
                    Some("line_items"),
                    format!("`line_items[{i}].quantity` must be at least 1"),
                ));
            }
        }
        check_url("success_url", &a.success_url)?;
        check_opt(&a.cancel_url, |u| check_url("cancel_url", u))?;
        check_opt(&a.customer, |c| check_id("customer", c, &["cus_"]))?;
        if a.customer.is_some() && a.customer_email.is_some() {
            return Err(ToolError::invalid(
                Some("customer_email"),
                "give `customer` or `customer_email`, not both",
            ));
        }
        if let Some(d) = &a.discounts {
            check_discounts("discounts", d)?;
            if a.allow_promotion_codes == Some(true) {
                return Err(ToolError::invalid(
                    Some("allow_promotion_codes"),
                    "`allow_promotion_codes` cannot be combined with `discounts`",
                ));
            }
        }
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}
