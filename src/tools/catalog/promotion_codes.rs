//! Promotion code tools: customer-facing codes for a coupon.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::skip;
use crate::sync::ObjectKind;
use crate::tools::args::{MetadataArg, check_id, check_id_alone, check_limit, check_opt};
use crate::tools::error::ToolError;
use crate::tools::{ArgDestroys, DestructiveEffect, Facts, PayTool};

/// Create a code customers type (e.g. FALL20) for a coupon.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePromotionCodeArgs {
    pub(crate) coupon: String,
    /// Stripe makes one if null.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) code: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    /// Only this customer may use it.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) customer: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) max_redemptions: Option<u32>,
    /// Unix time.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

pub(crate) struct CreatePromotionCode;
impl PayTool for CreatePromotionCode {
    const NAME: &'static str = "create_promotion_code";
    type Args = CreatePromotionCodeArgs;
    const FACTS: Facts<Self::Args> =
        Facts::create(&["promotion_codes.create"], Some(ObjectKind::PromotionCode));
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("coupon", &a.coupon, &[])?;
        check_opt(&a.code, |c| {
            if c.is_empty()
                || c.len() > 500
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                Err(ToolError::invalid(
                    Some("code"),
                    format!("`code` `{c}` may only hold letters, digits, - and _"),
                ))
            } else {
                Ok(())
            }
        })?;
        check_opt(&a.customer, |c| check_id("customer", c, &["cus_"]))?;
        if a.max_redemptions == Some(0) {
            return Err(ToolError::invalid(
                Some("max_redemptions"),
                "`max_redemptions` must be at least 1",
            ));
        }
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// List promotion codes (newest first) or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetPromotionCodesArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) code: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) coupon: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) customer: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) limit: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) starting_after: Option<String>,
}

pub(crate) struct GetPromotionCodes;
impl PayTool for GetPromotionCodes {
    const NAME: &'static str = "get_promotion_codes";
    type Args = GetPromotionCodesArgs;
    const FACTS: Facts<Self::Args> =
        Facts::read(&["promotion_codes.list", "promotion_codes.retrieve"]);
    fn operation(a: &Self::Args) -> &'static str {
        if a.id.is_some() {
            "promotion_codes.retrieve"
        } else {
            "promotion_codes.list"
        }
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_opt(&a.id, |id| check_id("id", id, &["promo_"]))?;
        check_opt(&a.customer, |c| check_id("customer", c, &["cus_"]))?;
        check_id_alone(
            &a.id,
            a.code.is_some()
                || a.coupon.is_some()
                || a.active.is_some()
                || a.customer.is_some()
                || a.limit.is_some()
                || a.starting_after.is_some(),
        )?;
        check_limit(a.limit)
    }
}

/// Turn a promotion code on or off (it cannot be deleted), or change its metadata.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePromotionCodeArgs {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

pub(crate) struct UpdatePromotionCode;
impl PayTool for UpdatePromotionCode {
    const NAME: &'static str = "update_promotion_code";
    type Args = UpdatePromotionCodeArgs;
    const FACTS: Facts<Self::Args> = Facts::update(
        &["promotion_codes.update"],
        ObjectKind::PromotionCode,
        GetPromotionCodes::NAME,
    )
    .destroys_when(&[ArgDestroys {
        param: "active",
        effect: DestructiveEffect::Deactivate,
        test: |a| a.active == Some(false),
    }]);
    const REFUSED: &'static [(&'static str, &'static str)] = &[
        (
            "code",
            "a promotion code's code never changes; create a new one",
        ),
        (
            "coupon",
            "a promotion code's coupon never changes; create a new one",
        ),
    ];
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["promo_"])?;
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}
