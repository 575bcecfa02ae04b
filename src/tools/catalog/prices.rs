//! Price tools: create, list or fetch, update what Stripe lets change.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::skip;
use crate::sync::ObjectKind;
use crate::tools::args::{
    MetadataArg, check_amount, check_currency, check_id, check_id_alone, check_limit, check_opt,
};
use crate::tools::error::ToolError;
use crate::tools::{ArgDestroys, DestructiveEffect, Facts, PayTool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    /// Stripe allows at most one year between charges.
    fn max_count(self) -> u32 {
        match self {
            Interval::Day => 365,
            Interval::Week => 52,
            Interval::Month => 12,
            Interval::Year => 1,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecurringArg {
    pub(crate) interval: Interval,
    /// Default 1; 3 with month = quarterly.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) interval_count: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaxBehavior {
    Inclusive,
    Exclusive,
    Unspecified,
}

/// Create a price: one-time (recurring null) or recurring. Amount, currency, recurring and
/// product never change afterwards.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePriceArgs {
    /// prod_... id.
    pub(crate) product: String,
    /// In cents: 2000 = $20.00.
    pub(crate) unit_amount: i64,
    /// Lowercase ISO code, e.g. usd.
    pub(crate) currency: String,
    /// Null for a one-time price.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) recurring: Option<RecurringArg>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) nickname: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) lookup_key: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) tax_behavior: Option<TaxBehavior>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

pub(crate) struct CreatePrice;
impl PayTool for CreatePrice {
    const NAME: &'static str = "create_price";
    type Args = CreatePriceArgs;
    const FACTS: Facts<Self::Args> =
        Facts::create(&["prices.create"], Some(ObjectKind::Price)).starter();
    const REFUSED: &'static [(&'static str, &'static str)] = &[
        (
            "interval",
            "put it inside `recurring`: {\"interval\": \"month\"}",
        ),
        (
            "interval_count",
            "put it inside `recurring` next to `interval`",
        ),
        (
            "product_data",
            "create the product first with create_product",
        ),
    ];
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("product", &a.product, &[])?;
        check_amount("unit_amount", a.unit_amount)?;
        check_currency("currency", &mut a.currency)?;
        if let Some(r) = &a.recurring {
            match r.interval_count {
                Some(n) if n == 0 || n > r.interval.max_count() => {
                    return Err(ToolError::invalid(
                        Some("recurring.interval_count"),
                        format!(
                            "`recurring.interval_count` {n} is out of range: between 1 and {} for interval {:?} (at most one year)",
                            r.interval.max_count(),
                            r.interval
                        ),
                    ));
                }
                _ => {}
            }
        }
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PriceType {
    OneTime,
    Recurring,
}

/// List prices (newest first) or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetPricesArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    /// Only prices of this product (prod_...).
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) product: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) r#type: Option<PriceType>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) limit: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) starting_after: Option<String>,
}

pub(crate) struct GetPrices;
impl PayTool for GetPrices {
    const NAME: &'static str = "get_prices";
    type Args = GetPricesArgs;
    const FACTS: Facts<Self::Args> = Facts::read(&["prices.list", "prices.retrieve"]);
    fn operation(a: &Self::Args) -> &'static str {
        if a.id.is_some() {
            "prices.retrieve"
        } else {
            "prices.list"
        }
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_opt(&a.id, |id| check_id("id", id, &["price_", "plan_"]))?;
        check_opt(&a.product, |p| check_id("product", p, &[]))?;
        check_id_alone(
            &a.id,
            a.product.is_some()
                || a.active.is_some()
                || a.r#type.is_some()
                || a.limit.is_some()
                || a.starting_after.is_some(),
        )?;
        check_limit(a.limit)
    }
}

/// Change a price (verify it first). To change the amount, create a new price and archive
/// this one.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePriceArgs {
    pub(crate) id: String,
    /// false archives it (prices cannot be deleted).
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) nickname: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) lookup_key: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) tax_behavior: Option<TaxBehavior>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

const PRICE_IMMUTABLE: &str = "a price's amount, currency, recurring and product never change; create a new price with create_price and archive this one with active=false";

pub(crate) struct UpdatePrice;
impl PayTool for UpdatePrice {
    const NAME: &'static str = "update_price";
    type Args = UpdatePriceArgs;
    const FACTS: Facts<Self::Args> =
        Facts::update(&["prices.update"], ObjectKind::Price, GetPrices::NAME).destroys_when(&[
            ArgDestroys {
                param: "active",
                effect: DestructiveEffect::Deactivate,
                test: |a| a.active == Some(false),
            },
        ]);
    const REFUSED: &'static [(&'static str, &'static str)] = &[
        ("unit_amount", PRICE_IMMUTABLE),
        ("currency", PRICE_IMMUTABLE),
        ("recurring", PRICE_IMMUTABLE),
        ("product", PRICE_IMMUTABLE),
    ];
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["price_", "plan_"])?;
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}
