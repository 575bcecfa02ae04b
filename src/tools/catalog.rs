//! Every Altan Pay tool: its arguments (whose doc comments the model reads), its route and
//! its checks. One section per Stripe resource, in the order the tools are offered.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::args::{
    DiscountArg, Metadata, check_amount, check_currency, check_discounts, check_id, check_id_alone,
    check_limit, check_opt, check_text,
};
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

fn skip<T>(v: &Option<T>) -> bool {
    v.is_none()
}

/// Fails when an update names an object and nothing to change.
fn require_change(tool: &str, any: bool) -> Result<(), ToolError> {
    if any {
        Ok(())
    } else {
        Err(ToolError::invalid(
            None,
            format!("{tool} needs at least one field to change besides `id`"),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Account

/// Look up the Stripe Connect id (acct_...) of the Altan account. Other tools find it by
/// themselves; call this only when the user asks for it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectIdArgs {}

pub struct GetAccountStripeConnectionId;
impl PayTool for GetAccountStripeConnectionId {
    const NAME: &'static str = "get_account_stripe_connection_id";
    type Args = ConnectIdArgs;
    fn operation(_: &ConnectIdArgs) -> &'static str {
        "account.stripe_connect_id"
    }
}

// ---------------------------------------------------------------------------------------
// Products

/// Create a product (a good or service to sell). Returns the product with its id; add
/// prices with create_price.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductArgs {
    /// Name shown to customers.
    pub name: String,
    /// Description shown to customers.
    #[serde(default, skip_serializing_if = "skip")]
    pub description: Option<String>,
    /// Whether it can be bought. Default true.
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
    /// Image URLs, at most 8.
    #[serde(default, skip_serializing_if = "skip")]
    pub images: Option<Vec<String>>,
    /// Public URL of the product.
    #[serde(default, skip_serializing_if = "skip")]
    pub url: Option<String>,
    /// Unit label on receipts, e.g. "seat".
    #[serde(default, skip_serializing_if = "skip")]
    pub unit_label: Option<String>,
}

pub struct CreateProduct;
impl PayTool for CreateProduct {
    const NAME: &'static str = "create_product";
    type Args = CreateProductArgs;
    const REFUSED: &'static [(&'static str, &'static str)] = &[(
        "default_price_data",
        "create the product, then its prices with create_price",
    )];
    fn operation(_: &Self::Args) -> &'static str {
        "products.create"
    }
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

/// List products, newest first, as whole objects with has_more; or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetProductsArgs {
    /// Fetch this one product (prod_...) instead of listing.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Only active (true) or archived (false) products.
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    /// Only these product ids.
    #[serde(default, skip_serializing_if = "skip")]
    pub ids: Option<Vec<String>>,
    /// 1 to 100, default 10.
    #[serde(default, skip_serializing_if = "skip")]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[serde(default, skip_serializing_if = "skip")]
    pub starting_after: Option<String>,
}

pub struct GetProducts;
impl PayTool for GetProducts {
    const NAME: &'static str = "get_products";
    type Args = GetProductsArgs;
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

/// Change a product. Verify it first with get_products; only the given fields change.
/// To stop selling it, set active to false.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProductArgs {
    /// Product id (prod_...) from a Stripe result.
    pub id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub description: Option<String>,
    /// false archives the product.
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    /// Merged into the existing metadata.
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "skip")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "skip")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub unit_label: Option<String>,
    /// Price id (price_...) to make the product's default price.
    #[serde(default, skip_serializing_if = "skip")]
    pub default_price: Option<String>,
}

pub struct UpdateProduct;
impl PayTool for UpdateProduct {
    const NAME: &'static str = "update_product";
    type Args = UpdateProductArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "products.update"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])?;
        check_opt(&a.name, |n| check_text("name", n, 250))?;
        check_images(&a.images)?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        check_opt(&a.default_price, |p| {
            check_id("default_price", p, &["price_", "plan_"])
        })?;
        require_change(
            Self::NAME,
            a.name.is_some()
                || a.description.is_some()
                || a.active.is_some()
                || a.metadata.is_some()
                || a.images.is_some()
                || a.url.is_some()
                || a.unit_label.is_some()
                || a.default_price.is_some(),
        )
    }
}

/// Delete a product. Stripe refuses while the product has prices: archive its prices
/// (update_price active=false), then delete; if Stripe still refuses, archive the product
/// (update_product active=false).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteProductArgs {
    /// Product id (prod_...) from a Stripe result.
    pub id: String,
}

pub struct DeleteProduct;
impl PayTool for DeleteProduct {
    const NAME: &'static str = "delete_product";
    type Args = DeleteProductArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "products.delete"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])
    }
}

// ---------------------------------------------------------------------------------------
// Prices

/// Billing period of a recurring price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
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

/// Makes a price recurring.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurringArg {
    pub interval: Interval,
    /// Number of intervals between charges, default 1 (e.g. 3 with month = quarterly).
    #[serde(default, skip_serializing_if = "skip")]
    pub interval_count: Option<u32>,
}

/// How tax is counted in the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaxBehavior {
    Inclusive,
    Exclusive,
    Unspecified,
}

/// Create a price for a product: one-time (recurring null) or recurring. The amount,
/// currency, recurring and product can never change afterwards.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePriceArgs {
    /// Product id (prod_...) this price belongs to.
    pub product: String,
    /// Amount in the smallest currency unit, e.g. 2000 = $20.00.
    pub unit_amount: i64,
    /// Three-letter ISO code, lower case, e.g. usd.
    pub currency: String,
    /// Null for a one-time price.
    #[serde(default, skip_serializing_if = "skip")]
    pub recurring: Option<RecurringArg>,
    /// Internal label, not shown to customers.
    #[serde(default, skip_serializing_if = "skip")]
    pub nickname: Option<String>,
    /// Stable key to find the price by.
    #[serde(default, skip_serializing_if = "skip")]
    pub lookup_key: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub tax_behavior: Option<TaxBehavior>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

pub struct CreatePrice;
impl PayTool for CreatePrice {
    const NAME: &'static str = "create_price";
    type Args = CreatePriceArgs;
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
    fn operation(_: &Self::Args) -> &'static str {
        "prices.create"
    }
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

/// One-time or recurring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceType {
    OneTime,
    Recurring,
}

/// List prices, newest first, as whole objects with has_more; or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPricesArgs {
    /// Fetch this one price (price_...) instead of listing.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Only prices of this product (prod_...).
    #[serde(default, skip_serializing_if = "skip")]
    pub product: Option<String>,
    /// Only active (true) or archived (false) prices.
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "skip")]
    pub r#type: Option<PriceType>,
    /// 1 to 100, default 10.
    #[serde(default, skip_serializing_if = "skip")]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[serde(default, skip_serializing_if = "skip")]
    pub starting_after: Option<String>,
}

pub struct GetPrices;
impl PayTool for GetPrices {
    const NAME: &'static str = "get_prices";
    type Args = GetPricesArgs;
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

/// Change what Stripe lets change on a price: active (false archives it), nickname,
/// lookup_key, tax_behavior, metadata. To change the amount, create a new price and
/// archive this one. Verify it first with get_prices.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePriceArgs {
    /// Price id (price_...) from a Stripe result.
    pub id: String,
    /// false archives the price (prices cannot be deleted).
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    /// Internal label, not shown to customers.
    #[serde(default, skip_serializing_if = "skip")]
    pub nickname: Option<String>,
    /// Stable key to find the price by.
    #[serde(default, skip_serializing_if = "skip")]
    pub lookup_key: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub tax_behavior: Option<TaxBehavior>,
    /// Merged into the existing metadata.
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

const PRICE_IMMUTABLE: &str = "a price's amount, currency, recurring and product never change; create a new price with create_price and archive this one with active=false";

pub struct UpdatePrice;
impl PayTool for UpdatePrice {
    const NAME: &'static str = "update_price";
    type Args = UpdatePriceArgs;
    const REFUSED: &'static [(&'static str, &'static str)] = &[
        ("unit_amount", PRICE_IMMUTABLE),
        ("currency", PRICE_IMMUTABLE),
        ("recurring", PRICE_IMMUTABLE),
        ("product", PRICE_IMMUTABLE),
    ];
    fn operation(_: &Self::Args) -> &'static str {
        "prices.update"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["price_", "plan_"])?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        require_change(
            Self::NAME,
            a.active.is_some()
                || a.nickname.is_some()
                || a.lookup_key.is_some()
                || a.tax_behavior.is_some()
                || a.metadata.is_some(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Customers

/// Create a customer (a payer). Every subscription needs one.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerArgs {
    #[serde(default, skip_serializing_if = "skip")]
    pub email: Option<String>,
    /// Full name or business name.
    #[serde(default, skip_serializing_if = "skip")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
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

pub struct CreateCustomer;
impl PayTool for CreateCustomer {
    const NAME: &'static str = "create_customer";
    type Args = CreateCustomerArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "customers.create"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_email(&a.email)?;
        check_opt(&a.metadata, |m| m.check("metadata"))
    }
}

/// List customers, newest first, as whole objects with has_more; or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCustomersArgs {
    /// Fetch this one customer (cus_...) instead of listing.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Only customers with this exact email (case-sensitive).
    #[serde(default, skip_serializing_if = "skip")]
    pub email: Option<String>,
    /// 1 to 100, default 10.
    #[serde(default, skip_serializing_if = "skip")]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[serde(default, skip_serializing_if = "skip")]
    pub starting_after: Option<String>,
}

pub struct GetCustomers;
impl PayTool for GetCustomers {
    const NAME: &'static str = "get_customers";
    type Args = GetCustomersArgs;
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

/// Change a customer, or apply a coupon or promotion code to them with discounts.
/// Verify the customer first with get_customers.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomerArgs {
    /// Customer id (cus_...) from a Stripe result.
    pub id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub phone: Option<String>,
    /// Merged into the existing metadata.
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
    /// Discount to apply to the customer's future invoices; an empty list removes it.
    #[serde(default, skip_serializing_if = "skip")]
    pub discounts: Option<Vec<DiscountArg>>,
}

pub struct UpdateCustomer;
impl PayTool for UpdateCustomer {
    const NAME: &'static str = "update_customer";
    type Args = UpdateCustomerArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "customers.update"
    }
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
        require_change(
            Self::NAME,
            a.email.is_some()
                || a.name.is_some()
                || a.description.is_some()
                || a.phone.is_some()
                || a.metadata.is_some()
                || a.discounts.is_some(),
        )
    }
}

/// Delete a customer. Stripe cancels their subscriptions at once. Destructive: only when
/// the user asked for it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteCustomerArgs {
    /// Customer id (cus_...) from a Stripe result.
    pub id: String,
}

pub struct DeleteCustomer;
impl PayTool for DeleteCustomer {
    const NAME: &'static str = "delete_customer";
    type Args = DeleteCustomerArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "customers.delete"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["cus_"])
    }
}

// ---------------------------------------------------------------------------------------
// Subscriptions

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

// ---------------------------------------------------------------------------------------
// Coupons

/// How long a coupon's discount lasts once applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CouponDuration {
    Once,
    Repeating,
    Forever,
}

/// Create a coupon: exactly one of percent_off, or amount_off with currency. Apply it by
/// attaching it to a customer (update_customer) or a subscription (discounts).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCouponArgs {
    /// Percentage off, above 0 and at most 100.
    #[serde(default, skip_serializing_if = "skip")]
    pub percent_off: Option<f64>,
    /// Fixed amount off in the smallest currency unit; needs currency.
    #[serde(default, skip_serializing_if = "skip")]
    pub amount_off: Option<i64>,
    /// Currency of amount_off.
    #[serde(default, skip_serializing_if = "skip")]
    pub currency: Option<String>,
    pub duration: CouponDuration,
    /// Months the discount lasts; only and always with duration repeating.
    #[serde(default, skip_serializing_if = "skip")]
    pub duration_in_months: Option<u32>,
    /// Name shown to customers, e.g. "Launch 20%".
    #[serde(default, skip_serializing_if = "skip")]
    pub name: Option<String>,
    /// Own coupon id, e.g. LAUNCH20; Stripe makes one if null.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Total times it can be redeemed.
    #[serde(default, skip_serializing_if = "skip")]
    pub max_redemptions: Option<u32>,
    /// Unix timestamp after which it can no longer be redeemed.
    #[serde(default, skip_serializing_if = "skip")]
    pub redeem_by: Option<i64>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

pub struct CreateCoupon;
impl PayTool for CreateCoupon {
    const NAME: &'static str = "create_coupon";
    type Args = CreateCouponArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "coupons.create"
    }
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

/// List coupons, newest first, as whole objects with has_more; or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCouponsArgs {
    /// Fetch this one coupon instead of listing.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// 1 to 100, default 10.
    #[serde(default, skip_serializing_if = "skip")]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[serde(default, skip_serializing_if = "skip")]
    pub starting_after: Option<String>,
}

pub struct GetCoupons;
impl PayTool for GetCoupons {
    const NAME: &'static str = "get_coupons";
    type Args = GetCouponsArgs;
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

/// Rename a coupon or change its metadata; nothing else about a coupon can change.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCouponArgs {
    /// Coupon id from a Stripe result.
    pub id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub name: Option<String>,
    /// Merged into the existing metadata.
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

pub struct UpdateCoupon;
impl PayTool for UpdateCoupon {
    const NAME: &'static str = "update_coupon";
    type Args = UpdateCouponArgs;
    const REFUSED: &'static [(&'static str, &'static str)] = &[
        ("percent_off", COUPON_IMMUTABLE),
        ("amount_off", COUPON_IMMUTABLE),
        ("currency", COUPON_IMMUTABLE),
        ("duration", COUPON_IMMUTABLE),
        ("duration_in_months", COUPON_IMMUTABLE),
    ];
    fn operation(_: &Self::Args) -> &'static str {
        "coupons.update"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])?;
        check_opt(&a.name, |n| check_text("name", n, 40))?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        require_change(Self::NAME, a.name.is_some() || a.metadata.is_some())
    }
}

/// Delete a coupon. Customers and subscriptions that already have it keep their discount.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteCouponArgs {
    /// Coupon id from a Stripe result.
    pub id: String,
}

pub struct DeleteCoupon;
impl PayTool for DeleteCoupon {
    const NAME: &'static str = "delete_coupon";
    type Args = DeleteCouponArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "coupons.delete"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &[])
    }
}

// ---------------------------------------------------------------------------------------
// Promotion codes

/// Create a customer-facing code (e.g. FALL20) for a coupon.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePromotionCodeArgs {
    /// Coupon id the code redeems.
    pub coupon: String,
    /// The code customers type; Stripe makes one if null.
    #[serde(default, skip_serializing_if = "skip")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    /// Only this customer (cus_...) may use it.
    #[serde(default, skip_serializing_if = "skip")]
    pub customer: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub max_redemptions: Option<u32>,
    /// Unix timestamp when the code expires.
    #[serde(default, skip_serializing_if = "skip")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

pub struct CreatePromotionCode;
impl PayTool for CreatePromotionCode {
    const NAME: &'static str = "create_promotion_code";
    type Args = CreatePromotionCodeArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "promotion_codes.create"
    }
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

/// List promotion codes, newest first, as whole objects with has_more; or fetch one by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPromotionCodesArgs {
    /// Fetch this one promotion code (promo_...) instead of listing.
    #[serde(default, skip_serializing_if = "skip")]
    pub id: Option<String>,
    /// Only this customer-facing code.
    #[serde(default, skip_serializing_if = "skip")]
    pub code: Option<String>,
    /// Only codes of this coupon.
    #[serde(default, skip_serializing_if = "skip")]
    pub coupon: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    /// Only codes restricted to this customer (cus_...).
    #[serde(default, skip_serializing_if = "skip")]
    pub customer: Option<String>,
    /// 1 to 100, default 10.
    #[serde(default, skip_serializing_if = "skip")]
    pub limit: Option<u32>,
    /// Cursor: the last id of the previous page.
    #[serde(default, skip_serializing_if = "skip")]
    pub starting_after: Option<String>,
}

pub struct GetPromotionCodes;
impl PayTool for GetPromotionCodes {
    const NAME: &'static str = "get_promotion_codes";
    type Args = GetPromotionCodesArgs;
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

/// Turn a promotion code on or off, or change its metadata. Promotion codes cannot be
/// deleted: deactivate with active=false.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePromotionCodeArgs {
    /// Promotion code id (promo_...) from a Stripe result.
    pub id: String,
    #[serde(default, skip_serializing_if = "skip")]
    pub active: Option<bool>,
    /// Merged into the existing metadata.
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
}

pub struct UpdatePromotionCode;
impl PayTool for UpdatePromotionCode {
    const NAME: &'static str = "update_promotion_code";
    type Args = UpdatePromotionCodeArgs;
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
    fn operation(_: &Self::Args) -> &'static str {
        "promotion_codes.update"
    }
    fn check(a: &mut Self::Args) -> Result<(), ToolError> {
        check_id("id", &a.id, &["promo_"])?;
        check_opt(&a.metadata, |m| m.check("metadata"))?;
        require_change(Self::NAME, a.active.is_some() || a.metadata.is_some())
    }
}

// ---------------------------------------------------------------------------------------
// Checkout

/// What a checkout session sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutMode {
    /// One-time prices.
    Payment,
    /// Recurring prices; Stripe creates the customer and subscription on success.
    Subscription,
    /// Save a payment method only.
    Setup,
}

/// A price and quantity in a checkout session.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineItemArg {
    /// Price id (price_...).
    pub price: String,
    pub quantity: u32,
}

/// Create a Stripe Checkout session and return its payment page url. On success Stripe
/// creates the customer (and the subscription in subscription mode) by itself.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCheckoutSessionArgs {
    pub mode: CheckoutMode,
    /// Prices to buy; none in setup mode.
    pub line_items: Vec<LineItemArg>,
    /// Where the customer lands after paying.
    pub success_url: String,
    /// Where the customer lands after giving up.
    #[serde(default, skip_serializing_if = "skip")]
    pub cancel_url: Option<String>,
    /// Existing customer (cus_...).
    #[serde(default, skip_serializing_if = "skip")]
    pub customer: Option<String>,
    /// Prefill the email when there is no customer.
    #[serde(default, skip_serializing_if = "skip")]
    pub customer_email: Option<String>,
    /// Coupon or promotion code applied up front.
    #[serde(default, skip_serializing_if = "skip")]
    pub discounts: Option<Vec<DiscountArg>>,
    /// Let the customer type a promotion code; not with discounts.
    #[serde(default, skip_serializing_if = "skip")]
    pub allow_promotion_codes: Option<bool>,
    /// Your own reference, e.g. the user id in the app.
    #[serde(default, skip_serializing_if = "skip")]
    pub client_reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "skip")]
    pub metadata: Option<Metadata>,
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

pub struct CreateCheckoutSession;
impl PayTool for CreateCheckoutSession {
    const NAME: &'static str = "create_checkout_session";
    type Args = CreateCheckoutSessionArgs;
    fn operation(_: &Self::Args) -> &'static str {
        "checkout_sessions.create"
    }
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
