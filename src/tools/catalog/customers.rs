//! Customer tools: create, list or fetch, update (discounts too), delete.
//! The doc comments on the argument types are what the model reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::skip;
use crate::sync::ObjectKind;
use crate::tools::args::{
    DiscountArg, MetadataArg, check_discounts, check_id, check_id_alone, check_limit, check_opt,
};
use crate::tools::error::ToolError;
use crate::tools::{Facts, PayTool};

/// Create a customer (a payer).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCustomerArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) phone: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
}

fn check_email(email: &Option<String>) -> Result<(), ToolError> {
    check_opt(email, |e| {
        let ok = e.len() <= 512
            && e.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !e.contains(char::is_whitespace)
            });
        if ok {
            Ok(())
        } else {
            Err(ToolError::invalid(
                Some("email"),
                format!("`email` `{e}` is not an email address"),
            ))
        }
    })
}

pub(crate) struct CreateCustomer;
impl PayTool for CreateCustomer {
    const NAME: &'static str = "create_customer";
    type Args = CreateCustomerArgs;
    const FACTS: Facts<Self::Args> =
        Facts::create(&["customers.create"], Some(ObjectKind::Customer));
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_email(&a.email)?;
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// List customers (newest first) or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetCustomersArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) id: Option<String>,
    /// Exact, case-sensitive.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) limit: Option<u32>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) starting_after: Option<String>,
}

pub(crate) struct GetCustomers;
impl PayTool for GetCustomers {
    const NAME: &'static str = "get_customers";
    type Args = GetCustomersArgs;
    const FACTS: Facts<Self::Args> = Facts::read(&["customers.list", "customers.retrieve"]);
    fn operation(a: &Self::Args) -> &'static str {
        if a.id.is_some() {
            "customers.retrieve"
        } else {
            "customers.list"
        }
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_opt(&a.id, |id| check_id("id", id, &["cus_"]))?;
        check_id_alone(
            &a.id,
            a.email.is_some() || a.limit.is_some() || a.starting_after.is_some(),
        )?;
        check_limit(a.limit)
    }
}

/// Change a customer (verify it first); discounts applies a coupon or promotion code.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateCustomerArgs {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) email: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) phone: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) metadata: Option<MetadataArg>,
    /// An empty list removes it.
    #[serde(default, skip_serializing_if = "skip")]
    pub(crate) discounts: Option<Vec<DiscountArg>>,
}

pub(crate) struct UpdateCustomer;
impl PayTool for UpdateCustomer {
    const NAME: &'static str = "update_customer";
    type Args = UpdateCustomerArgs;
    const FACTS: Facts<Self::Args> = Facts::update(
        &["customers.update"],
        ObjectKind::Customer,
        GetCustomers::NAME,
    );
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["cus_"])?;
        check_email(&a.email)?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        if let Some(d) = &a.discounts {
            if d.len() > 1 {
                return Err(ToolError::invalid(
                    Some("discounts"),
                    "a customer takes at most one discount",
                ));
            }
            check_discounts("discounts", d)?;
        }
        Ok(())
    }
}

/// Delete a customer (destructive; Stripe cancels their subscriptions).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteCustomerArgs {
    pub(crate) id: String,
}

pub(crate) struct DeleteCustomer;
impl PayTool for DeleteCustomer {
    const NAME: &'static str = "delete_customer";
    type Args = DeleteCustomerArgs;
    const FACTS: Facts<Self::Args> = Facts::delete(
        &["customers.delete"],
        ObjectKind::Customer,
        GetCustomers::NAME,
    );
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["cus_"])
    }
}
