//! Every Altan Pay tool, one file per Stripe object: its arguments (whose doc comments the
//! model reads), its route and its checks. A new tool is a struct in its object's file and a
//! line in [`all`].

mod account;
mod checkout;
mod coupons;
mod customers;
mod prices;
mod products;
mod promotion_codes;
mod subscriptions;

use std::sync::Arc;

pub use account::*;
pub use checkout::*;
pub use coupons::*;
pub use customers::*;
pub use prices::*;
pub use products::*;
pub use promotion_codes::*;
pub use subscriptions::*;

use super::error::ToolError;
use super::{PayTool, PayToolAdapter, Tool};

/// All tools, in the order they are offered to the model.
pub fn all() -> Vec<Arc<dyn Tool>> {
    fn t<T: PayTool>() -> Arc<dyn Tool> {
        Arc::new(PayToolAdapter::<T>::new())
    }
    vec![
        t::<GetAccountStripeConnectionId>(),
        t::<CreateProduct>(),
        t::<GetProducts>(),
        t::<UpdateProduct>(),
        t::<DeleteProduct>(),
        t::<CreatePrice>(),
        t::<GetPrices>(),
        t::<UpdatePrice>(),
        t::<CreateCustomer>(),
        t::<GetCustomers>(),
        t::<UpdateCustomer>(),
        t::<DeleteCustomer>(),
        t::<CreateSubscription>(),
        t::<GetSubscriptions>(),
        t::<UpdateSubscription>(),
        t::<CancelSubscription>(),
        t::<CreateCoupon>(),
        t::<GetCoupons>(),
        t::<UpdateCoupon>(),
        t::<DeleteCoupon>(),
        t::<CreatePromotionCode>(),
        t::<GetPromotionCodes>(),
        t::<UpdatePromotionCode>(),
        t::<CreateCheckoutSession>(),
    ]
}

/// The database table each tool's changes are written to (`None` for reads and for objects
/// the database does not mirror). Used for the README's tool table and by the sync plan.
pub fn synced_table(tool: &str) -> Option<&'static str> {
    match tool {
        "create_product" | "update_product" | "delete_product" => Some("products"),
        "create_price" | "update_price" => Some("prices"),
        "create_customer" | "update_customer" | "delete_customer" => Some("customers"),
        "create_subscription" | "update_subscription" | "cancel_subscription" => {
            Some("subscriptions")
        }
        "create_coupon" | "update_coupon" | "delete_coupon" => Some("coupons"),
        "create_promotion_code" | "update_promotion_code" => Some("promotion_codes"),
        _ => None,
    }
}

pub(super) fn skip<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// Fails when an update names an object and nothing to change.
pub(super) fn require_change(tool: &str, any: bool) -> Result<(), ToolError> {
    if any {
        Ok(())
    } else {
        Err(ToolError::invalid(
            None,
            format!("{tool} needs at least one field to change besides `id`"),
        ))
    }
}
