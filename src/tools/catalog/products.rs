//! Product tools: create, list or fetch, update, delete.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::skip;
use crate::sync::ObjectKind;
use crate::tools::args::{
    MetadataArg, check_id, check_id_alone, check_limit, check_opt, check_text,
};
use crate::tools::error::ToolError;
use crate::tools::{ArgDestroys, DestructiveEffect, Facts, PayTool};

/// Create a product; returns it with its id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProductArgs {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
    /// At most 8 URLs.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) url: Option<String>,
    /// E.g. "seat".
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) unit_label: Option<String>,
}

pub(crate) struct CreateProduct;
impl PayTool for CreateProduct {
    const NAME: &'static str = "create_product";
    type Args = CreateProductArgs;
    const FACTS: Facts<Self::Args> =
        Facts::create(&["products.create"], Some(ObjectKind::Product)).starter();
    const REFUSED: &'static [(&'static str, &'static str)] = &[(
        "default_price_data",
        "create the product, then its prices with create_price",
    )];
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_text("name", &a.name, 250)?;
        check_images(&a.images)?;
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

fn check_images(images: &Option<Vec<String>>) -> Result<(), ToolError> {
    match images {
        Some(list) if list.len() > 8 => Err(ToolError::invalid(
            Some("images"),
            format!("`images` has {} URLs; Stripe allows at most 8", list.len()),
        )),
        _ => Ok(()),
    }
}

/// List products (newest first) or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetProductsArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) limit: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) starting_after: Option<String>,
}

pub(crate) struct GetProducts;
impl PayTool for GetProducts {
    const NAME: &'static str = "get_products";
    type Args = GetProductsArgs;
    const FACTS: Facts<Self::Args> = Facts::read(&["products.list", "products.retrieve"]);
    fn operation(a: &Self::Args) -> &'static str {
        if a.id.is_some() {
            "products.retrieve"
        } else {
            "products.list"
        }
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_opt(&a.id, |id| check_id("id", id, &[]))?;
        check_id_alone(
            &a.id,
            a.active.is_some()
                || a.ids.is_some()
                || a.limit.is_some()
                || a.starting_after.is_some(),
        )?;
        check_limit(a.limit)
    }
}

/// Change a product (verify it first); only the given fields change.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateProductArgs {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) description: Option<String>,
    /// false archives it.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) url: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) unit_label: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) default_price: Option<String>,
}

pub(crate) struct UpdateProduct;
impl PayTool for UpdateProduct {
    const NAME: &'static str = "update_product";
    type Args = UpdateProductArgs;
    const FACTS: Facts<Self::Args> =
        Facts::update(&["products.update"], ObjectKind::Product, GetProducts::NAME).destroys_when(
            &[ArgDestroys {
                param: "active",
                effect: DestructiveEffect::Deactivate,
                test: |a| a.active == Some(false),
            }],
        );
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])?;
        check_opt(&a.name, |n| check_text("name", n, 250))?;
        check_images(&a.images)?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        check_opt(&a.default_price, |p| {
            check_id("default_price", p, &["price_", "plan_"])
        })
    }
}

/// Delete a product. Stripe refuses while the product has prices: archive its prices
/// (update_price active=false), then delete; if Stripe still refuses, archive the product
/// (update_product active=false).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteProductArgs {
    pub(crate) id: String,
}

pub(crate) struct DeleteProduct;
impl PayTool for DeleteProduct {
    const NAME: &'static str = "delete_product";
    type Args = DeleteProductArgs;
    const FACTS: Facts<Self::Args> =
        Facts::delete(&["products.delete"], ObjectKind::Product, GetProducts::NAME);
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])
    }
}
