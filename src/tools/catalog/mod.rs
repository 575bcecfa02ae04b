//! Every Altan Pay tool, one file per Stripe object: its arguments (whose doc comments the
//! model reads), its declaration ([`crate::tools::PayTool::FACTS`]: what it does, its routes,
//! what it targets and syncs, when it is sent, which argument values destroy) and its checks.
//! A new tool is a struct in its object's file and a line in [`all`].

mod account;
mod checkout;
mod coupons;
mod customers;
mod prices;
mod products;
mod promotion_codes;
mod subscriptions;

use std::sync::Arc;

use account::*;
use checkout::*;
use coupons::*;
use customers::*;
use prices::*;
use products::*;
use promotion_codes::*;
use subscriptions::*;

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

pub(super) fn skip<T>(v: &Option<T>) -> bool {
    v.is_none()
}
