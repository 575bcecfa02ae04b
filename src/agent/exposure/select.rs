//! Which tools a request needs, chosen before its first model call from what the runtime
//! already knows, so the model does not spend a round trip on `open_tools`.
//!
//! The selection reads the request's words, never the tools' names: a word table says which
//! Stripe resources a request is about (the resource is the first part of a tool's declared
//! route, `products.update` -> `products`) and what it wants done with them (the tool's declared
//! [`Action`]). A few rules of the spec's workflows add what those actions need:
//! - every resource a request acts on is read first (ids come from Stripe);
//! - prices are found through their product; a subscription through its customer; a new
//!   subscription or a checkout session names a price (so its product is read too);
//! - a discount (coupon, promotion code, a percentage) given to a customer or a subscription
//!   is created and then applied: the holder is updated, not created;
//! - deleting a product falls back to archiving it and deactivating its prices;
//! - a cancellation may be at the period's end (an update) as well as at once.
//!
//! What is chosen is added in priority order (the actions asked for, then the reads of what
//! they act on, the reads they refer to, the reads of what they create) while the definitions
//! sent stay within [`BUDGET_BYTES`]: the selection saves a round trip, it never makes a call
//! large. The same words always give the same tools; the order they are sent in is the tool
//! set's (see [`crate::tools::open`]). Selection is not permission: a tool not chosen still
//! runs under the same policy when the model calls it, and the model can open more.

use std::collections::BTreeSet;

use crate::tools::Action;

/// The definitions a selection may bring the thread's tools to, `open_tools` left out, in bytes
/// of JSON as sent (about 900 o200k tokens: the prompt, the context and the conversation keep
/// the rest of a 3,000-token call).
pub(crate) const BUDGET_BYTES: usize = 4_000;

/// A Stripe resource a request can be about, by its name in the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Resource {
    Account,
    Products,
    Prices,
    Customers,
    Subscriptions,
    Coupons,
    PromotionCodes,
    Checkout,
}

impl Resource {
    /// The first part of the routes of the tools acting on it (`products.update`).
    pub(crate) fn route(self) -> &'static str {
        match self {
            Resource::Account => "account",
            Resource::Products => "products",
            Resource::Prices => "prices",
            Resource::Customers => "customers",
            Resource::Subscriptions => "subscriptions",
            Resource::Coupons => "coupons",
            Resource::PromotionCodes => "promotion_codes",
            Resource::Checkout => "checkout_sessions",
        }
    }

    /// The resource whose routes start with `prefix`.
    pub(crate) fn of_route(route: &str) -> Option<Resource> {
        let prefix = route.split('.').next()?;
        RESOURCES.iter().copied().find(|r| r.route() == prefix)
    }

    fn is_discount(self) -> bool {
        matches!(self, Resource::Coupons | Resource::PromotionCodes)
    }

    fn holds_discounts(self) -> bool {
        matches!(self, Resource::Customers | Resource::Subscriptions)
    }
}

const RESOURCES: [Resource; 8] = [
    Resource::Account,
    Resource::Products,
    Resource::Prices,
    Resource::Customers,
    Resource::Subscriptions,
    Resource::Coupons,
    Resource::PromotionCodes,
    Resource::Checkout,
];

/// Words that name a resource (lower case, whole words).
const RESOURCE_WORDS: &[(Resource, &[&str])] = &[
    (Resource::Account, &["connected", "connection", "connect"]),
    (Resource::Products, &["product", "products"]),
    (
        Resource::Prices,
        &[
            "price", "prices", "pricing", "monthly", "yearly", "annual", "annually", "month",
            "year", "nickname", "lookup",
        ],
    ),
    (Resource::Customers, &["customer", "customers"]),
    (
        Resource::Subscriptions,
        &[
            "subscription",
            "subscriptions",
            "subscribe",
            "subscribed",
            "unsubscribe",
        ],
    ),
    (
        Resource::Coupons,
        &["coupon", "coupons", "discount", "discounts"],
    ),
    (
        Resource::PromotionCodes,
        &["promo", "promotion", "promotions", "code", "codes"],
    ),
    (Resource::Checkout, &["checkout", "link"]),
];

/// Stripe id prefixes that name a resource.
const ID_PREFIXES: &[(&str, Resource)] = &[
    ("acct_", Resource::Account),
    ("prod_", Resource::Products),
    ("price_", Resource::Prices),
    ("cus_", Resource::Customers),
    ("sub_", Resource::Subscriptions),
    ("promo_", Resource::PromotionCodes),
    ("cs_", Resource::Checkout),
];

/// What a request wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Intent {
    Create,
    Change,
    Delete,
    Cancel,
}

const INTENT_WORDS: &[(Intent, &[&str])] = &[
    (
        Intent::Create,
        &[
            "create", "add", "make", "launch", "generate", "issue", "build",
        ],
    ),
    (
        Intent::Change,
        &[
            "update",
            "change",
            "changed",
            "rename",
            "renamed",
            "edit",
            "set",
            "modify",
            "nickname",
            "describe",
            "description",
            "deactivate",
            "archive",
            "activate",
            "reactivate",
            "disable",
            "enable",
            "apply",
            "push",
            "move",
            "switch",
        ],
    ),
    (Intent::Delete, &["delete", "remove", "erase"]),
    (Intent::Cancel, &["cancel", "stop", "unsubscribe"]),
];

/// What a request's words say, before the workflow rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Reading {
    resources: BTreeSet<Resource>,
    intents: BTreeSet<Intent>,
    /// "sign up": a new customer on a new subscription.
    sign_up: bool,
}

impl Reading {
    /// Reads the texts of a request's new messages.
    pub(crate) fn of(texts: &[&str]) -> Reading {
        let mut r = Reading::default();
        for text in texts {
            r.read(text);
        }
        r
    }

    fn read(&mut self, text: &str) {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        for w in &words {
            for (resource, list) in RESOURCE_WORDS {
                if list.contains(w) {
                    self.resources.insert(*resource);
                }
            }
            for (intent, list) in INTENT_WORDS {
                if list.contains(w) {
                    self.intents.insert(*intent);
                }
            }
            if let Some((_, resource)) = ID_PREFIXES.iter().find(|(p, _)| w.starts_with(p)) {
                self.resources.insert(*resource);
            }
        }
        for pair in words.windows(2) {
            if pair == ["sign", "up"] {
                self.sign_up = true;
            }
            if pair == ["has", "a"] || pair == ["new", "email"] || pair == ["new", "name"] {
                // "has a new email", "a new name": a change to something that exists.
                self.intents.insert(Intent::Change);
            }
        }
        if has_email(&lower) {
            self.resources.insert(Resource::Customers);
        }
        if follows_digit(&lower, &['%']) {
            // A percentage is a discount's terms: a coupon to create.
            self.resources.insert(Resource::Coupons);
            self.intents.insert(Intent::Create);
        }
        if precedes_digit(&lower, &['$', '€', '£']) {
            self.resources.insert(Resource::Prices);
        }
        if self.sign_up {
            self.resources.insert(Resource::Customers);
            self.resources.insert(Resource::Subscriptions);
            self.intents.insert(Intent::Create);
        }
    }

    /// Whether the request asks for something done but names nothing it could be done to.
    fn lacks_resource(&self) -> bool {
        self.resources.is_empty() && !self.intents.is_empty()
    }

    /// A request that asks for something done and names nothing ("rename it") is about what
    /// the thread works with (`thread`: the resources of its tools), else about products.
    pub(crate) fn or_about(mut self, thread: impl IntoIterator<Item = Resource>) -> Reading {
        if self.lacks_resource() {
            self.resources.extend(thread);
            if self.resources.is_empty() {
                self.resources.insert(Resource::Products);
            }
        }
        self
    }
}

/// An address like `ann@example.com` (a mention `[@Altan](...)` is not one).
fn has_email(text: &str) -> bool {
    text.split_whitespace().any(|chunk| {
        let chunk = chunk.trim_matches(|c: char| !c.is_alphanumeric());
        match chunk.split_once('@') {
            Some((user, domain)) => {
                !user.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && domain
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
            }
            None => false,
        }
    })
}

fn follows_digit(text: &str, marks: &[char]) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(2)
        .any(|w| w[0].is_ascii_digit() && marks.contains(&w[1]))
}

fn precedes_digit(text: &str, marks: &[char]) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .windows(2)
        .any(|w| marks.contains(&w[0]) && w[1].is_ascii_digit())
}

/// One tool as the selection sees it: its resource, what it does, and the bytes of its
/// definition as sent.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub name: &'static str,
    pub resource: Resource,
    pub action: Action,
    pub bytes: usize,
}

/// What the request needs, most needed first: `(priority, resource, action)`.
fn wants(reading: &Reading) -> Vec<(u8, Resource, Action)> {
    use Resource::*;
    let mentioned = &reading.resources;
    let has = |r: Resource| mentioned.contains(&r);
    let mut out = Vec::new();
    // A discount given to a holder: the discount is made, the holder changed.
    let discount = mentioned.iter().any(|r| r.is_discount());
    let holder = [Subscriptions, Customers]
        .into_iter()
        .find(|&r| has(r) && discount && !reading.sign_up);
    // Resources a new subscription or checkout session names: read, not created.
    let mut referenced: BTreeSet<Resource> = BTreeSet::new();
    let new_subscription = has(Subscriptions)
        && reading.intents.contains(&Intent::Create)
        && holder != Some(Subscriptions);
    if has(Checkout) || new_subscription {
        referenced.extend([Prices, Products]);
    }
    if has(Subscriptions) {
        referenced.insert(Customers);
    }
    let mut created: BTreeSet<Resource> = BTreeSet::new();
    for &r in mentioned {
        let mut intents = reading.intents.clone();
        if Some(r) == holder {
            intents = BTreeSet::from([Intent::Change]);
        } else if holder.is_some() && r.holds_discounts() {
            // The other holder (the customer of the subscription) is only looked up.
            intents.clear();
        } else if holder.is_some() {
            // "apply" is the holder's; the discount itself is made.
            intents.remove(&Intent::Change);
        }
        if referenced.contains(&r) && !(r == Customers && reading.sign_up) {
            intents.remove(&Intent::Create);
        }
        match r {
            // One thing to do with each: make a session; read the connection.
            Checkout => intents = BTreeSet::from([Intent::Create]),
            Account => intents.clear(),
            _ => {}
        }
        // What it acts on is read first (ids come from Stripe).
        if intents.iter().any(|i| *i != Intent::Create) || intents.is_empty() {
            out.push((1, r, Action::Read));
        }
        for intent in &intents {
            match intent {
                Intent::Create => {
                    created.insert(r);
                    out.push((0, r, Action::Create));
                }
                Intent::Change => out.push((0, r, Action::Update)),
                Intent::Delete => {
                    out.push((0, r, Action::Delete));
                    // Prices are never deleted, only deactivated; a product with prices is
                    // archived, its prices deactivated.
                    if r == Prices || r == Products {
                        out.push((0, r, Action::Update));
                    }
                    if r == Products {
                        out.push((1, Prices, Action::Read));
                        out.push((1, Prices, Action::Update));
                    }
                }
                Intent::Cancel => {
                    out.push((0, r, Action::Cancel));
                    out.push((0, r, Action::Update));
                }
            }
        }
    }
    // What the request refers to and does not make.
    let refers: Vec<Resource> = mentioned
        .iter()
        .flat_map(|&r| match r {
            Prices if !created.contains(&Products) => vec![Products],
            PromotionCodes if !created.contains(&Coupons) => vec![Coupons],
            _ => vec![],
        })
        .chain(referenced.iter().copied())
        .collect();
    for r in refers {
        if !created.contains(&r) {
            out.push((2, r, Action::Read));
        }
    }
    // The reads of what it makes (the spec's workflow lists to confirm).
    for &r in &created {
        out.push((3, r, Action::Read));
    }
    out.sort_by_key(|w| w.0);
    out
}

/// The tools `reading` asks for, each once, most needed first (the order only decides what the
/// budget keeps; they are sent in the tool set's order). `already`: the tools the thread sends
/// whatever is chosen, `used` the bytes of their definitions; a tool that would take the total
/// past [`BUDGET_BYTES`] is left out (the model can still open it).
pub(crate) fn choose(
    reading: &Reading,
    candidates: &[Candidate],
    already: &[&str],
    mut used: usize,
) -> Vec<&'static str> {
    let mut chosen: Vec<&'static str> = Vec::new();
    for (_, resource, action) in wants(reading) {
        for c in candidates
            .iter()
            .filter(|c| c.resource == resource && c.action == action)
        {
            if chosen.contains(&c.name) || already.contains(&c.name) {
                continue;
            }
            if used + c.bytes > BUDGET_BYTES {
                continue;
            }
            used += c.bytes;
            chosen.push(c.name);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolSet;

    fn candidates() -> Vec<Candidate> {
        let tools = ToolSet::altan_pay();
        tools
            .iter()
            .filter_map(|t| {
                let d = t.declaration();
                Some(Candidate {
                    name: t.definition().name,
                    resource: Resource::of_route(d.routes.first()?)?,
                    action: d.action,
                    bytes: 0,
                })
            })
            .collect()
    }

    fn chosen(text: &str) -> Vec<&'static str> {
        let reading = Reading::of(&[text]).or_about([]);
        let mut names = choose(&reading, &candidates(), &[], 0);
        names.sort_unstable();
        names
    }

    /// The table: each request, the tools it is sent before its first model call.
    #[test]
    fn each_request_gets_the_tools_its_workflow_calls() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("a greeting needs no tool", "What can you do?", &[]),
            ("a list", "List my products.", &["get_products"]),
            (
                "the connection",
                "Which Stripe account is this workspace connected to?",
                &["get_account_stripe_connection_id"],
            ),
            (
                "a product and its prices",
                "Create a product called Pro with a monthly price of $20 and a yearly price of $200.",
                &[
                    "create_price",
                    "create_product",
                    "get_prices",
                    "get_products",
                ],
            ),
            (
                "a one-time price by its amount",
                "Add a T-shirt product sold for $25, paid once.",
                &[
                    "create_price",
                    "create_product",
                    "get_prices",
                    "get_products",
                ],
            ),
            (
                "a rename names no resource: products",
                "Rename Pro to Pro Plus and describe it as 'Everything in Acme'.",
                &["get_products", "update_product"],
            ),
            (
                "a price found through its product",
                "Deactivate the Pro monthly price.",
                &["get_prices", "get_products", "update_price"],
            ),
            (
                "a delete falls back to archiving",
                "Delete the T-shirt product.",
                &[
                    "delete_product",
                    "get_prices",
                    "get_products",
                    "update_price",
                    "update_product",
                ],
            ),
            (
                "a customer by email",
                "Ann (ann@example.com) has a new email: ann@newmail.com.",
                &["get_customers", "update_customer"],
            ),
            (
                "a customer deleted",
                "Delete the customer ann@example.com.",
                &["delete_customer", "get_customers"],
            ),
            (
                "a new customer",
                "Add the customer Cy Diaz, cy@example.com.",
                &["create_customer", "get_customers"],
            ),
            (
                "a sign-up: customer and subscription made, the price read",
                "Sign up Bo Li (bo@example.com) to Pro monthly.",
                &[
                    "create_customer",
                    "create_subscription",
                    "get_customers",
                    "get_prices",
                    "get_products",
                    "get_subscriptions",
                ],
            ),
            (
                "a cancellation now or at the period's end",
                "Ann wants to stop her Pro subscription at the end of the current period.",
                &[
                    "cancel_subscription",
                    "get_customers",
                    "get_subscriptions",
                    "update_subscription",
                ],
            ),
            (
                "a discount given to a subscription",
                "Give Ann's subscription (ann@example.com) 50% off for the next 3 months.",
                &[
                    "create_coupon",
                    "get_coupons",
                    "get_customers",
                    "get_subscriptions",
                    "update_subscription",
                ],
            ),
            (
                "a coupon and its code applied to a customer",
                "Create a 20% off forever coupon with the code WELCOME20 and apply it to Ann (ann@example.com).",
                &[
                    "create_coupon",
                    "create_promotion_code",
                    "get_coupons",
                    "get_customers",
                    "get_promotion_codes",
                    "update_customer",
                ],
            ),
            (
                "a checkout session names a price",
                "Give me a checkout link for Pro monthly.",
                &["create_checkout_session", "get_prices", "get_products"],
            ),
            (
                "an id names its resource",
                "The user renamed a product row prod_Basic; push this change to Stripe.",
                &["get_products", "update_product"],
            ),
            (
                "a mention is not an email",
                "Done. [@Altan](/member/altan-1)",
                &[],
            ),
        ];
        let mut wrong = Vec::new();
        for (case, text, want) in cases {
            let mut want = want.to_vec();
            want.sort_unstable();
            let got = chosen(text);
            if got != want {
                wrong.push(format!("{case}: {text:?}\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_budget_keeps_the_most_needed_tools() {
        let mut sized = candidates();
        for c in &mut sized {
            c.bytes = 1_000;
        }
        let reading = Reading::of(&["Delete the T-shirt product."]);
        // Room for three: the delete and the archive fallback come before the reads.
        let names = choose(&reading, &sized, &[], BUDGET_BYTES - 3_000);
        assert_eq!(names, ["delete_product", "update_product", "get_products"]);
        assert!(choose(&reading, &sized, &[], BUDGET_BYTES).is_empty());
    }

    #[test]
    fn what_the_thread_has_is_not_chosen_again() {
        let reading = Reading::of(&["Deactivate the Pro monthly price."]);
        let names = choose(&reading, &candidates(), &["get_products"], 0);
        assert_eq!(names, ["update_price", "get_prices"]);
    }

    #[test]
    fn a_request_naming_nothing_is_about_what_the_thread_works_with() {
        let reading = Reading::of(&["Now rename it to Team Plus."]);
        let names = choose(
            &reading.or_about([Resource::Customers]),
            &candidates(),
            &[],
            0,
        );
        assert_eq!(names, ["update_customer", "get_customers"]);
        let hello = Reading::of(&["Hello there"]).or_about([Resource::Customers]);
        assert!(
            choose(&hello, &candidates(), &[], 0).is_empty(),
            "{hello:?}"
        );
    }

    #[test]
    fn every_catalog_tool_has_a_resource_and_every_resource_a_tool() {
        let c = candidates();
        for r in RESOURCES {
            assert!(c.iter().any(|c| c.resource == r), "{r:?} has no tool");
        }
        assert_eq!(
            Resource::of_route("promotion_codes.create"),
            Some(Resource::PromotionCodes)
        );
        assert_eq!(Resource::of_route("plans.read"), None);
    }
}
