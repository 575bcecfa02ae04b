//! Coupon tools: create (percent or amount off), list or fetch, rename, delete.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::skip;
use crate::sync::ObjectKind;
use crate::tools::args::{
    MetadataArg, check_amount, check_currency, check_id, check_id_alone, check_limit, check_opt,
    check_text,
};
use crate::tools::error::ToolError;
use crate::tools::{Facts, PayTool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CouponDuration {
    Once,
    Repeating,
    Forever,
}

/// Create a coupon: exactly one of percent_off, or amount_off with currency.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCouponArgs {
    /// Above 0, at most 100.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) percent_off: Option<f64>,
    /// In cents; needs currency.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) amount_off: Option<i64>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) currency: Option<String>,
    pub(crate) duration: CouponDuration,
    /// Only and always with duration repeating.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) duration_in_months: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) name: Option<String>,
    /// E.g. LAUNCH20.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) max_redemptions: Option<u32>,
    /// Unix time.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) redeem_by: Option<i64>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

pub(crate) struct CreateCoupon;
impl PayTool for CreateCoupon {
    const NAME: &'static str = "create_coupon";
    type Args = CreateCouponArgs;
    const FACTS: Facts<Self::Args> = Facts::create(&["coupons.create"], Some(ObjectKind::Coupon));
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        match (a.percent_off, a.amount_off) {
            (Some(_), Some(_)) => {
                return Err(ToolError::invalid(
                    Some("percent_off"),
                    "give either `percent_off` or `amount_off` with `currency`, not both",
                ));
            }
            (None, None) => {
                return Err(ToolError::invalid(
                    Some("percent_off"),
                    "a coupon needs `percent_off`, or `amount_off` with `currency`",
                ));
            }
            (Some(p), None) => {
                if !(p > 0.0 && p <= 100.0) {
                    return Err(ToolError::invalid(
                        Some("percent_off"),
                        format!("`percent_off` is {p}; it must be above 0 and at most 100"),
                    ));
                }
                if a.currency.is_some() {
                    return Err(ToolError::invalid(
                        Some("currency"),
                        "`currency` goes only with `amount_off`; leave it null with `percent_off`",
                    ));
                }
            }
            (None, Some(amount)) => {
                check_amount("amount_off", amount)?;
                if amount == 0 {
                    return Err(ToolError::invalid(
                        Some("amount_off"),
                        "`amount_off` must be above 0",
                    ));
                }
                match &mut a.currency {
                    Some(c) => check_currency("currency", c)?,
                    None => {
                        return Err(ToolError::invalid(
                            Some("currency"),
                            "`amount_off` needs `currency`, e.g. usd",
                        ));
                    }
                }
            }
        }
        match (a.duration, a.duration_in_months) {
            (CouponDuration::Repeating, None | Some(0)) => {
                return Err(ToolError::invalid(
                    Some("duration_in_months"),
                    "duration repeating needs `duration_in_months` of at least 1",
                ));
            }
            (CouponDuration::Once | CouponDuration::Forever, Some(_)) => {
                return Err(ToolError::invalid(
                    Some("duration_in_months"),
                    "`duration_in_months` is only allowed with duration repeating",
                ));
            }
            _ => {}
        }
        check_opt(&a.id, |id| check_id("id", id, &[]))?;
        check_opt(&a.name, |n| check_text("name", n, 40))?;
        if a.max_redemptions == Some(0) {
            return Err(ToolError::invalid(
                Some("max_redemptions"),
                "`max_redemptions` must be at least 1",
            ));
        }
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// List coupons (newest first) or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetCouponsArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) limit: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) starting_after: Option<String>,
}

pub(crate) struct GetCoupons;
impl PayTool for GetCoupons {
    const NAME: &'static str = "get_coupons";
    type Args = GetCouponsArgs;
    const FACTS: Facts<Self::Args> = Facts::read(&["coupons.list", "coupons.retrieve"]);
    fn operation(a: &Self::Args) -> &'static str {
        if a.id.is_some() {
            "coupons.retrieve"
        } else {
            "coupons.list"
        }
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_opt(&a.id, |id| check_id("id", id, &[]))?;
        check_id_alone(&a.id, a.limit.is_some() || a.starting_after.is_some())?;
        check_limit(a.limit)
    }
}

const COUPON_IMMUTABLE: &str =
    "only a coupon's name and metadata can change; create a new coupon instead";

/// Rename a coupon or change its metadata (nothing else can change).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateCouponArgs {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

pub(crate) struct UpdateCoupon;
impl PayTool for UpdateCoupon {
    const NAME: &'static str = "update_coupon";
    type Args = UpdateCouponArgs;
    const FACTS: Facts<Self::Args> =
        Facts::update(&["coupons.update"], ObjectKind::Coupon, GetCoupons::NAME);
    const REFUSED: &'static [(&'static str, &'static str)] = &[
        ("percent_off", COUPON_IMMUTABLE),
        ("amount_off", COUPON_IMMUTABLE),
        ("currency", COUPON_IMMUTABLE),
        ("duration", COUPON_IMMUTABLE),
        ("duration_in_months", COUPON_IMMUTABLE),
    ];
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])?;
        check_opt(&a.name, |n| check_text("name", n, 40))?;
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// Delete a coupon (who has it keeps the discount).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteCouponArgs {
    pub(crate) id: String,
}

pub(crate) struct DeleteCoupon;
impl PayTool for DeleteCoupon {
    const NAME: &'static str = "delete_coupon";
    type Args = DeleteCouponArgs;
    const FACTS: Facts<Self::Args> =
        Facts::delete(&["coupons.delete"], ObjectKind::Coupon, GetCoupons::NAME);
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])
    }
}
