//! The sandbox gateway over real HTTP: Stripe's semantics, Stripe-shaped refusals of bad
//! input, and durability (reopen, and a child process killed with SIGKILL).

use std::sync::Arc;

use altan_pay::gateway::{self, GatewayHandle, Sandbox};
use altan_pay::pay::{RouteTable, RouteValues, form};
use serde_json::{Value, json};

struct Gw {
    handle: GatewayHandle,
    http: reqwest::Client,
    routes: RouteTable,
    account: String,
    connect: String,
}

impl Gw {
    async fn new() -> Gw {
        Gw::with(Sandbox::in_memory(), None).await
    }

    async fn with(sandbox: Sandbox, token: Option<&str>) -> Gw {
        let routes = RouteTable::embedded();
        let handle = gateway::spawn(
            routes.clone(),
            Arc::new(sandbox),
            token.map(secrecy::SecretString::from),
        )
        .await
        .unwrap();
        let mut gw = Gw {
            handle,
            http: reqwest::Client::new(),
            routes,
            account: "acc_test".into(),
            connect: String::new(),
        };
        gw.connect = gw.connect_id("acc_test").await;
        gw
    }

    async fn connect_id(&self, account: &str) -> String {
        let url = format!(
            "{}/v2/connect/account/{account}/stripe_connect_id",
            self.handle.base_url
        );
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["stripe_connect_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn url(&self, op: &str, id: Option<&str>, account: &str, connect: &str) -> String {
        let path = self.routes.get(op).unwrap().expand(&RouteValues {
            account_id: Some(account),
            id,
            stripe_connect_id: Some(connect),
        });
        format!("{}{}", self.handle.base_url, path.unwrap())
    }

    async fn call(&self, op: &str, id: Option<&str>, params: Value) -> (u16, Value) {
        self.send(
            op,
            id,
            params,
            None,
            &self.account.clone(),
            &self.connect.clone(),
        )
        .await
    }

    async fn keyed(&self, op: &str, id: Option<&str>, params: Value, key: &str) -> (u16, Value) {
        self.send(
            op,
            id,
            params,
            Some(key),
            &self.account.clone(),
            &self.connect.clone(),
        )
        .await
    }

    async fn send(
        &self,
        op: &str,
        id: Option<&str>,
        params: Value,
        key: Option<&str>,
        account: &str,
        connect: &str,
    ) -> (u16, Value) {
        let route = self.routes.get(op).unwrap();
        let url = self.url(op, id, account, connect);
        let mut req = match route.method {
            altan_pay::pay::Method::Get => {
                let q = form::encode(&params);
                let url = if q.is_empty() {
                    url
                } else {
                    format!("{url}&{q}")
                };
                self.http.get(url)
            }
            altan_pay::pay::Method::Post => self.http.post(url).json(&json!({ "payload": params })),
            altan_pay::pay::Method::Delete => self.http.delete(url),
        };
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn ok(&self, op: &str, id: Option<&str>, params: Value) -> Value {
        let (status, body) = self.call(op, id, params.clone()).await;
        assert_eq!(status, 200, "{op} {params}: {body}");
        body
    }

    async fn product(&self, name: &str) -> String {
        let p = self
            .ok("products.create", None, json!({"name": name}))
            .await;
        p["id"].as_str().unwrap().to_string()
    }

    async fn price(&self, product: &str, amount: i64, recurring: bool) -> String {
        let mut params = json!({"product": product, "currency": "usd", "unit_amount": amount});
        if recurring {
            params["recurring"] = json!({"interval": "month"});
        }
        let p = self.ok("prices.create", None, params).await;
        p["id"].as_str().unwrap().to_string()
    }

    async fn customer(&self, email: &str) -> String {
        let c = self
            .ok("customers.create", None, json!({"email": email}))
            .await;
        c["id"].as_str().unwrap().to_string()
    }
}

/// Asserts a Stripe-shaped error with this status, and returns the error object.
fn error(status: u16, body: &Value, want: u16) -> Value {
    assert_eq!(status, want, "{body}");
    let e = &body["error"];
    assert!(
        e["type"].is_string() && e["message"].is_string(),
        "not Stripe-shaped: {body}"
    );
    e.clone()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn connect_id_is_stable_and_isolates_accounts() {
    let gw = Gw::new().await;
    assert!(
        gw.connect.starts_with("acct_") && gw.connect.len() == 21,
        "{}",
        gw.connect
    );
    assert_eq!(gw.connect_id("acc_test").await, gw.connect);
    let other = gw.connect_id("acc_other").await;
    assert_ne!(other, gw.connect);
    let prod = gw.product("Pro").await;
    // The other account with its own Connect id does not see the product.
    let (s, b) = gw
        .send(
            "products.retrieve",
            Some(&prod),
            json!({}),
            None,
            "acc_other",
            &other,
        )
        .await;
    assert_eq!(error(s, &b, 404)["code"], "resource_missing");
    // A Connect id that is not the account's is refused, naming both.
    let (s, b) = gw
        .send("products.list", None, json!({}), None, "acc_test", &other)
        .await;
    let e = error(s, &b, 403);
    assert_eq!(e["param"], "stripe_connect_id");
    assert!(
        e["message"].as_str().unwrap().contains(&other)
            && e["message"].as_str().unwrap().contains("acc_test")
    );
}

#[tokio::test]
async fn products_have_sample_fields_and_merge_metadata() {
    let gw = Gw::new().await;
    let samples: Value = serde_json::from_str(include_str!("data/stripe_samples.json")).unwrap();
    let p = gw
        .ok(
            "products.create",
            None,
            json!({"name": "T", "metadata": {"a": "1", "b": "2"}}),
        )
        .await;
    assert!(p["id"].as_str().unwrap().starts_with("prod_"));
    assert_eq!(
        (p["livemode"].clone(), p["active"].clone()),
        (json!(false), json!(true))
    );
    for key in samples["product"].as_object().unwrap().keys() {
        assert!(p.get(key).is_some(), "product lacks `{key}`");
    }
    let id = p["id"].as_str().unwrap();
    let u = gw
        .ok(
            "products.update",
            Some(id),
            json!({"metadata": {"a": "", "c": "3"}, "description": "soft"}),
        )
        .await;
    assert_eq!(u["metadata"], json!({"b": "2", "c": "3"}));
    assert_eq!(u["description"], "soft");
    let u = gw
        .ok("products.update", Some(id), json!({"description": ""}))
        .await;
    assert!(u["description"].is_null());
    assert_eq!(gw.ok("products.retrieve", Some(id), json!({})).await, u);
}

#[tokio::test]
async fn lists_are_newest_first_with_cursors_and_filters() {
    let gw = Gw::new().await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(gw.product(&format!("p{i}")).await);
    }
    gw.ok("products.update", Some(&made[1]), json!({"active": false}))
        .await;
    let page = gw.ok("products.list", None, json!({"limit": 2})).await;
    assert_eq!(ids(&page), vec![made[4].clone(), made[3].clone()]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["object"], "list");
    assert_eq!(page["url"], "/v1/products");
    let next = gw
        .ok(
            "products.list",
            None,
            json!({"limit": 2, "starting_after": made[3]}),
        )
        .await;
    assert_eq!(ids(&next), vec![made[2].clone(), made[1].clone()]);
    let last = gw
        .ok(
            "products.list",
            None,
            json!({"limit": 2, "starting_after": made[1]}),
        )
        .await;
    assert_eq!(
        (ids(&last), last["has_more"].clone()),
        (vec![made[0].clone()], json!(false))
    );
    let back = gw
        .ok(
            "products.list",
            None,
            json!({"limit": 2, "ending_before": made[1]}),
        )
        .await;
    assert_eq!(ids(&back), vec![made[3].clone(), made[2].clone()]);
    let active = gw.ok("products.list", None, json!({"active": false})).await;
    assert_eq!(ids(&active), vec![made[1].clone()]);
    let some = gw
        .ok("products.list", None, json!({"ids": [made[0], made[4]]}))
        .await;
    assert_eq!(ids(&some), vec![made[4].clone(), made[0].clone()]);
    for bad in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"limit": "ten"}),
    ] {
        let (s, b) = gw.call("products.list", None, bad).await;
        assert_eq!(error(s, &b, 400)["param"], "limit");
    }
    let (s, b) = gw
        .call(
            "products.list",
            None,
            json!({"starting_after": "prod_nope"}),
        )
        .await;
    assert_eq!(error(s, &b, 400)["param"], "starting_after");
    let (s, b) = gw
        .call("products.list", None, json!({"colour": "red"}))
        .await;
    let e = error(s, &b, 400);
    assert_eq!(
        (e["code"].clone(), e["param"].clone()),
        (json!("parameter_unknown"), json!("colour"))
    );
}

#[tokio::test]
async fn product_with_prices_is_archived_not_deleted() {
    let gw = Gw::new().await;
    let with_price = gw.product("A").await;
    gw.price(&with_price, 500, false).await;
    let (s, b) = gw
        .call("products.delete", Some(&with_price), json!({}))
        .await;
    let e = error(s, &b, 400);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("one or more user-created prices"),
        "{e}"
    );
    let archived = gw
        .ok(
            "products.update",
            Some(&with_price),
            json!({"active": false}),
        )
        .await;
    assert_eq!(archived["active"], false);
    let bare = gw.product("B").await;
    let d = gw.ok("products.delete", Some(&bare), json!({})).await;
    assert_eq!(d, json!({"id": bare, "object": "product", "deleted": true}));
    let (s, b) = gw.call("products.retrieve", Some(&bare), json!({})).await;
    assert_eq!(error(s, &b, 404)["code"], "resource_missing");
}

#[tokio::test]
async fn prices_validate_types_and_never_change_amounts() {
    let gw = Gw::new().await;
    let prod = gw.product("P").await;
    let p = gw
        .ok(
            "prices.create",
            None,
            json!({"product": prod, "currency": "EUR", "unit_amount": "1500",
        "recurring": {"interval": "year", "interval_count": 1}}),
        )
        .await;
    assert!(p["id"].as_str().unwrap().starts_with("price_"));
    assert_eq!(
        (
            p["currency"].clone(),
            p["unit_amount"].clone(),
            p["type"].clone()
        ),
        (json!("eur"), json!(1500), json!("recurring"))
    );
    assert_eq!(p["unit_amount_decimal"], "1500");
    let id = p["id"].as_str().unwrap();
    for field in ["unit_amount", "currency", "recurring", "product"] {
        let (s, b) = gw
            .call("prices.update", Some(id), json!({ field: "x" }))
            .await;
        let e = error(s, &b, 400);
        assert_eq!(
            (e["code"].clone(), e["param"].clone()),
            (json!("parameter_unknown"), json!(field))
        );
    }
    let archived = gw
        .ok(
            "prices.update",
            Some(id),
            json!({"active": false, "nickname": "old"}),
        )
        .await;
    assert_eq!(
        (archived["active"].clone(), archived["unit_amount"].clone()),
        (json!(false), json!(1500))
    );
    let cases = [
        (
            json!({"product": prod, "currency": "usd", "unit_amount": "abc"}),
            "unit_amount",
            Some("parameter_invalid_integer"),
        ),
        (
            json!({"product": prod, "currency": "usd", "unit_amount": -5}),
            "unit_amount",
            Some("parameter_invalid_integer"),
        ),
        (
            json!({"product": prod, "currency": "dollars", "unit_amount": 5}),
            "currency",
            None,
        ),
        (
            json!({"product": prod, "currency": "usd", "unit_amount": 5, "recurring": {"interval_count": 3}}),
            "recurring[interval]",
            Some("parameter_missing"),
        ),
        (
            json!({"product": prod, "unit_amount": 5}),
            "currency",
            Some("parameter_missing"),
        ),
        (
            json!({"product": "prod_missing", "currency": "usd", "unit_amount": 5}),
            "product",
            Some("resource_missing"),
        ),
        (
            json!({"product": prod, "currency": "usd", "unit_amount": 5, "recurring": {"interval": "fortnight"}}),
            "recurring[interval]",
            None,
        ),
    ];
    for (params, param, code) in cases {
        let (s, b) = gw.call("prices.create", None, params.clone()).await;
        let e = error(s, &b, 400);
        assert_eq!(e["param"], param, "{params}");
        if let Some(code) = code {
            assert_eq!(e["code"], code, "{params}");
        }
    }
    let one_time = gw.price(&prod, 900, false).await;
    let listed = gw
        .ok(
            "prices.list",
            None,
            json!({"type": "one_time", "product": prod}),
        )
        .await;
    assert_eq!(ids(&listed), vec![one_time.clone()]);
    let active = gw.ok("prices.list", None, json!({"active": true})).await;
    assert_eq!(ids(&active), vec![one_time]);
}

#[tokio::test]
async fn deleting_a_customer_cancels_subscriptions_and_leaves_a_tombstone() {
    let gw = Gw::new().await;
    let prod = gw.product("P").await;
    let price = gw.price(&prod, 1000, true).await;
    let cus = gw.customer("a@example.com").await;
    gw.customer("b@example.com").await;
    let sub = gw
        .ok(
            "subscriptions.create",
            None,
            json!({"customer": cus, "items": [{"price": price}]}),
        )
        .await;
    let sub_id = sub["id"].as_str().unwrap();
    let by_email = gw
        .ok("customers.list", None, json!({"email": "a@example.com"}))
        .await;
    assert_eq!(ids(&by_email), vec![cus.clone()]);
    let d = gw.ok("customers.delete", Some(&cus), json!({})).await;
    assert_eq!(d, json!({"id": cus, "object": "customer", "deleted": true}));
    assert_eq!(gw.ok("customers.retrieve", Some(&cus), json!({})).await, d);
    let s = gw
        .ok("subscriptions.retrieve", Some(sub_id), json!({}))
        .await;
    assert_eq!(s["status"], "canceled");
    assert!(s["canceled_at"].is_i64() && s["ended_at"].is_i64());
    let (st, b) = gw
        .call("customers.update", Some(&cus), json!({"name": "x"}))
        .await;
    error(st, &b, 404);
    let all = gw.ok("customers.list", None, json!({})).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
    let (st, b) = gw
        .call(
            "subscriptions.create",
            None,
            json!({"customer": cus, "items": [{"price": price}]}),
        )
        .await;
    assert_eq!(error(st, &b, 400)["param"], "customer");
}

#[tokio::test]
async fn subscriptions_need_active_recurring_prices_and_stay_canceled() {
    let gw = Gw::new().await;
    let samples: Value = serde_json::from_str(include_str!("data/stripe_samples.json")).unwrap();
    let prod = gw.product("P").await;
    let monthly = gw.price(&prod, 1000, true).await;
    let once = gw.price(&prod, 1000, false).await;
    let archived = gw.price(&prod, 2000, true).await;
    gw.ok("prices.update", Some(&archived), json!({"active": false}))
        .await;
    let cus = gw.customer("c@example.com").await;
    for (price, why) in [
        (&once, "one_time"),
        (&archived, "inactive"),
        (&"price_nope".to_string(), "No such price"),
    ] {
        let (s, b) = gw
            .call(
                "subscriptions.create",
                None,
                json!({"customer": cus, "items": [{"price": price}]}),
            )
            .await;
        let e = error(s, &b, 400);
        assert_eq!(e["param"], "items[0][price]");
        assert!(e["message"].as_str().unwrap().contains(why), "{e}");
    }
    let (s, b) = gw
        .call(
            "subscriptions.create",
            None,
            json!({"customer": "cus_nope", "items": [{"price": monthly}]}),
        )
        .await;
    assert_eq!(error(s, &b, 400)["param"], "customer");
    let sub = gw
        .ok(
            "subscriptions.create",
            None,
            json!({"customer": cus, "items": [{"price": monthly, "quantity": 2}]}),
        )
        .await;
    for key in samples["subscription"].as_object().unwrap().keys() {
        assert!(sub.get(key).is_some(), "subscription lacks `{key}`");
    }
    let item = &sub["items"]["data"][0];
    for key in samples["subscription_item"].as_object().unwrap().keys() {
        assert!(item.get(key).is_some(), "subscription item lacks `{key}`");
    }
    assert!(sub["id"].as_str().unwrap().starts_with("sub_"));
    assert!(item["id"].as_str().unwrap().starts_with("si_"));
    assert_eq!(
        (
            sub["status"].clone(),
            item["quantity"].clone(),
            item["price"]["id"].clone()
        ),
        (json!("active"), json!(2), json!(monthly))
    );
    assert!(
        item["current_period_end"].as_i64().unwrap()
            > item["current_period_start"].as_i64().unwrap() + 27 * 86_400
    );
    let id = sub["id"].as_str().unwrap();
    let u = gw
        .ok(
            "subscriptions.update",
            Some(id),
            json!({"cancel_at_period_end": true, "metadata": {"k": "v"}}),
        )
        .await;
    assert_eq!(u["cancel_at"], item["current_period_end"]);
    let c = gw
        .ok(
            "subscriptions.cancel",
            Some(id),
            json!({"cancellation_details": {"comment": "moving"}}),
        )
        .await;
    assert_eq!(
        (
            c["status"].clone(),
            c["cancellation_details"]["comment"].clone()
        ),
        (json!("canceled"), json!("moving"))
    );
    let (s, b) = gw
        .call(
            "subscriptions.update",
            Some(id),
            json!({"cancel_at_period_end": false}),
        )
        .await;
    assert_eq!(error(s, &b, 400)["param"], "cancel_at_period_end");
    let (s, b) = gw.call("subscriptions.cancel", Some(id), json!({})).await;
    error(s, &b, 400);
    let live = gw
        .ok(
            "subscriptions.create",
            None,
            json!({"customer": cus, "items": [{"price": monthly}]}),
        )
        .await;
    let default = gw
        .ok("subscriptions.list", None, json!({"customer": cus}))
        .await;
    assert_eq!(
        ids(&default),
        vec![live["id"].as_str().unwrap().to_string()]
    );
    let all = gw
        .ok(
            "subscriptions.list",
            None,
            json!({"status": "all", "price": monthly}),
        )
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let canceled = gw
        .ok("subscriptions.list", None, json!({"status": "canceled"}))
        .await;
    assert_eq!(ids(&canceled), vec![id.to_string()]);
}

#[tokio::test]
async fn coupons_promotion_codes_and_discounts() {
    let gw = Gw::new().await;
    let c = gw.ok("coupons.create", None, json!({"percent_off": 25, "duration": "repeating", "duration_in_months": 3, "max_redemptions": 2})).await;
    let coupon = c["id"].as_str().unwrap().to_string();
    assert_eq!(coupon.len(), 8);
    let (s, b) = gw
        .call("coupons.update", Some(&coupon), json!({"percent_off": 50}))
        .await;
    assert_eq!(error(s, &b, 400)["code"], "parameter_unknown");
    let u = gw
        .ok(
            "coupons.update",
            Some(&coupon),
            json!({"name": "Quarter off", "metadata": {"x": "1"}}),
        )
        .await;
    assert_eq!(
        (u["name"].clone(), u["percent_off"].clone()),
        (json!("Quarter off"), json!(25.0))
    );
    for (params, param) in [
        (
            json!({"percent_off": 10, "amount_off": 100, "currency": "usd"}),
            "amount_off",
        ),
        (json!({"amount_off": 100}), "currency"),
        (
            json!({"duration": "repeating", "percent_off": 5}),
            "duration_in_months",
        ),
        (json!({"percent_off": 120}), "percent_off"),
    ] {
        let (s, b) = gw.call("coupons.create", None, params.clone()).await;
        assert_eq!(error(s, &b, 400)["param"], param, "{params}");
    }
    let promo = gw
        .ok(
            "promotion_codes.create",
            None,
            json!({"coupon": coupon, "code": "FALL25"}),
        )
        .await;
    let promo_id = promo["id"].as_str().unwrap().to_string();
    assert!(promo_id.starts_with("promo_"));
    assert_eq!(
        promo["promotion"],
        json!({"coupon": coupon, "type": "coupon"})
    );
    let (s, b) = gw
        .call(
            "promotion_codes.create",
            None,
            json!({"coupon": coupon, "code": "FALL25"}),
        )
        .await;
    assert_eq!(error(s, &b, 400)["param"], "code");
    let found = gw
        .ok(
            "promotion_codes.list",
            None,
            json!({"code": "FALL25", "coupon": coupon, "active": true}),
        )
        .await;
    assert_eq!(ids(&found), vec![promo_id.clone()]);
    // No delete route for promotion codes: DELETE on its path is refused.
    let url = gw.url(
        "promotion_codes.retrieve",
        Some(&promo_id),
        "acc_test",
        &gw.connect,
    );
    let resp = gw.http.delete(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    // Customer discount via a promotion code, subscription discount via the coupon.
    let cus = gw
        .ok(
            "customers.create",
            None,
            json!({"email": "d@example.com", "discounts": [{"promotion_code": promo_id}]}),
        )
        .await;
    assert_eq!(
        cus["discount"]["source"],
        json!({"coupon": coupon, "type": "coupon"})
    );
    assert_eq!(cus["discount"]["promotion_code"], json!(promo_id));
    let prod = gw.product("P").await;
    let price = gw.price(&prod, 1000, true).await;
    let sub = gw.ok("subscriptions.create", None, json!({"customer": cus["id"], "items": [{"price": price}], "discounts": [{"coupon": coupon}]})).await;
    assert!(sub["discounts"][0].as_str().unwrap().starts_with("di_"));
    let used = gw.ok("coupons.retrieve", Some(&coupon), json!({})).await;
    assert_eq!(
        (used["times_redeemed"].clone(), used["valid"].clone()),
        (json!(2), json!(false))
    );
    let (s, b) = gw
        .call(
            "subscriptions.update",
            Some(sub["id"].as_str().unwrap()),
            json!({"discounts": [{"coupon": coupon}]}),
        )
        .await;
    assert_eq!(error(s, &b, 400)["param"], "discounts[0][coupon]");
    let (s, b) = gw
        .call(
            "customers.update",
            Some(cus["id"].as_str().unwrap()),
            json!({"discounts": [{"coupon": "NOPE"}]}),
        )
        .await;
    let e = error(s, &b, 400);
    assert_eq!(
        (e["code"].clone(), e["param"].clone()),
        (json!("resource_missing"), json!("discounts[0][coupon]"))
    );
    let d = gw.ok("coupons.delete", Some(&coupon), json!({})).await;
    assert_eq!(
        d,
        json!({"id": coupon, "object": "coupon", "deleted": true})
    );
}

#[tokio::test]
async fn checkout_sessions_compute_amounts_and_check_modes() {
    let gw = Gw::new().await;
    let samples: Value = serde_json::from_str(include_str!("data/stripe_samples.json")).unwrap();
    let prod = gw.product("P").await;
    let once = gw.price(&prod, 1250, false).await;
    let monthly = gw.price(&prod, 900, true).await;
    let coupon = gw
        .ok("coupons.create", None, json!({"percent_off": 10}))
        .await;
    let s = gw.ok("checkout_sessions.create", None, json!({"mode": "payment", "success_url": "https://x.test/ok",
        "line_items": [{"price": once, "quantity": 2}], "discounts": [{"coupon": coupon["id"]}], "customer_email": "e@x.test"})).await;
    for key in samples["checkout.session"].as_object().unwrap().keys() {
        assert!(s.get(key).is_some(), "session lacks `{key}`");
    }
    let id = s["id"].as_str().unwrap();
    assert!(id.starts_with("cs_test_"));
    assert_eq!(s["url"], format!("https://checkout.stripe.com/c/pay/{id}"));
    assert_eq!(
        (s["status"].clone(), s["payment_status"].clone()),
        (json!("open"), json!("unpaid"))
    );
    assert_eq!(
        (s["amount_subtotal"].clone(), s["amount_total"].clone()),
        (json!(2500), json!(2250))
    );
    assert_eq!(s["total_details"]["amount_discount"], 250);
    let (st, b) = gw
        .call(
            "checkout_sessions.create",
            None,
            json!({"mode": "payment", "line_items": [{"price": monthly, "quantity": 1}]}),
        )
        .await;
    assert_eq!(error(st, &b, 400)["param"], "line_items[0][price]");
    let (st, b) = gw
        .call(
            "checkout_sessions.create",
            None,
            json!({"mode": "subscription", "line_items": [{"price": once, "quantity": 1}]}),
        )
        .await;
    assert_eq!(error(st, &b, 400)["param"], "line_items");
    let sub = gw
        .ok(
            "checkout_sessions.create",
            None,
            json!({"mode": "subscription", "line_items": [{"price": monthly, "quantity": 1}]}),
        )
        .await;
    assert_eq!(
        (sub["mode"].clone(), sub["amount_total"].clone()),
        (json!("subscription"), json!(900))
    );
    let (st, b) = gw
        .call(
            "checkout_sessions.create",
            None,
            json!({"line_items": [{"price": once, "quantity": 1}]}),
        )
        .await;
    assert_eq!(error(st, &b, 400)["code"], "parameter_missing");
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_other_parameters() {
    let gw = Gw::new().await;
    let (s1, first) = gw
        .keyed("products.create", None, json!({"name": "Once"}), "key-1")
        .await;
    let (s2, again) = gw
        .keyed("products.create", None, json!({"name": "Once"}), "key-1")
        .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, again);
    assert_eq!(
        gw.ok("products.list", None, json!({})).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (s, b) = gw
        .keyed("products.create", None, json!({"name": "Twice"}), "key-1")
        .await;
    assert_eq!(error(s, &b, 400)["type"], "idempotency_error");
    // Errors from execution are replayed too: the product appears later, the answer stays 404.
    let (s, b) = gw
        .keyed(
            "products.update",
            Some("prod_later"),
            json!({"name": "x"}),
            "key-2",
        )
        .await;
    error(s, &b, 404);
    gw.ok(
        "products.create",
        None,
        json!({"name": "Later", "id": "prod_later"}),
    )
    .await;
    let (s, b) = gw
        .keyed(
            "products.update",
            Some("prod_later"),
            json!({"name": "x"}),
            "key-2",
        )
        .await;
    error(s, &b, 404);
    // Keys are scoped per account.
    let other = gw.connect_id("acc_other").await;
    let (s, b) = gw
        .send(
            "products.create",
            None,
            json!({"name": "Elsewhere"}),
            Some("key-1"),
            "acc_other",
            &other,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_ne!(b["id"], first["id"]);
}

async fn raw(
    gw: &Gw,
    method: reqwest::Method,
    url: String,
    body: Option<&'static str>,
) -> (u16, Value) {
    let mut req = gw.http.request(method, url);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn bad_input_gets_a_stripe_shaped_4xx_that_names_the_problem() {
    let gw = Gw::new().await;
    let create = gw.url("products.create", None, "acc_test", &gw.connect);
    let post = reqwest::Method::POST;
    let cases: [(Option<&'static str>, &str); 6] = [
        (Some("{\"payload\": {\"name\": "), "not valid JSON"),
        (Some("{\"name\": \"x\"}"), "`name`"),
        (Some("{\"payload\": \"name=x\"}"), "not a string"),
        (Some("[1, 2]"), "JSON array"),
        (Some(""), "empty"),
        (Some("{}"), "no `payload`"),
    ];
    for (body, says) in cases {
        let (s, b) = raw(&gw, post.clone(), create.clone(), body).await;
        let e = error(s, &b, 400);
        assert!(
            e["message"].as_str().unwrap().contains(says),
            "{body:?}: {e}"
        );
    }
    let (s, b) = raw(
        &gw,
        post.clone(),
        create.clone(),
        Some("{\"payload\": {\"name\": 5, \"price\": 1}}"),
    )
    .await;
    assert_eq!(error(s, &b, 400)["param"], "price");
    let (s, b) = raw(
        &gw,
        post.clone(),
        create.clone(),
        Some("{\"payload\": {\"name\": \"x\", \"active\": \"maybe\"}}"),
    )
    .await;
    assert_eq!(error(s, &b, 400)["param"], "active");
    let (s, b) = raw(
        &gw,
        reqwest::Method::GET,
        format!("{}/v1/products", gw.handle.base_url),
        None,
    )
    .await;
    assert!(
        error(s, &b, 404)["message"]
            .as_str()
            .unwrap()
            .contains("GET: /v1/products")
    );
    let (s, b) = raw(&gw, reqwest::Method::GET, create.clone(), None).await;
    error(s, &b, 405);
    let (s, b) = raw(
        &gw,
        reqwest::Method::GET,
        format!(
            "{}/v2/connect/products/acc%ZZ/get_products?stripe_connect_id=x",
            gw.handle.base_url
        ),
        None,
    )
    .await;
    assert!(
        error(s, &b, 400)["message"]
            .as_str()
            .unwrap()
            .contains("percent-encoding")
    );
    let list = gw.url("products.list", None, "acc_test", &gw.connect);
    let (s, b) = raw(&gw, reqwest::Method::GET, format!("{list}&limit=%G1"), None).await;
    assert!(
        error(s, &b, 400)["message"]
            .as_str()
            .unwrap()
            .contains("percent-encoding")
    );
    let no_connect = format!(
        "{}/v2/connect/products/acc_test/get_products",
        gw.handle.base_url
    );
    let (s, b) = raw(&gw, reqwest::Method::GET, no_connect, None).await;
    assert_eq!(error(s, &b, 400)["param"], "stripe_connect_id");
    let big = format!("{{\"payload\": {{\"name\": \"{}\"}}}}", "x".repeat(2 << 20));
    let resp = gw
        .http
        .post(create.clone())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let b: Value = resp.json().await.unwrap();
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than")
    );
    let (s, b) = raw(
        &gw,
        post,
        format!("{create}&name=x"),
        Some("{\"payload\": {}}"),
    )
    .await;
    assert_eq!(error(s, &b, 400)["param"], "name");
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    // acc_test's Connect id is bound by the state, so acct_x is a second, different one.
    let state = json!({"accounts": {"acc_test": {"stripe_connect_id": "acct_bound"}}});
    let gw = Gw::with(Sandbox::with_state(&state).unwrap(), Some("s3cret")).await;
    let url = gw.url("products.list", None, "acc_test", "acct_x");
    let (s, b) = raw(&gw, reqwest::Method::GET, url.clone(), None).await;
    error(s, &b, 401);
    let resp = gw
        .http
        .get(url.clone())
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = gw.http.get(url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        403,
        "authorized, but acct_x is not the account's Connect id"
    );
}

#[tokio::test]
async fn initial_state_seeds_objects_and_connect_ids() {
    let state = json!({"accounts": {"acc_test": {"stripe_connect_id": "acct_seeded",
        "products": [{"id": "prod_old", "name": "Old", "active": true}, {"id": "prod_new", "name": "New", "active": true}]}}});
    let gw = Gw::with(Sandbox::with_state(&state).unwrap(), None).await;
    assert_eq!(gw.connect, "acct_seeded");
    let list = gw.ok("products.list", None, json!({})).await;
    assert_eq!(
        ids(&list),
        vec!["prod_new".to_string(), "prod_old".to_string()]
    );
    let bad = Sandbox::with_state(&json!({"accounts": {"a": {"widgets": []}}}));
    assert!(bad.err().unwrap().to_string().contains("widgets"));
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("altan-gw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("sandbox.db")
}

#[tokio::test]
async fn state_survives_closing_and_reopening_the_file() {
    let path = temp_db("reopen");
    let gw = Gw::with(Sandbox::open(&path).unwrap(), None).await;
    let prod = gw.product("Kept").await;
    let price = gw.price(&prod, 700, true).await;
    let (_, first) = gw
        .keyed(
            "customers.create",
            None,
            json!({"email": "k@x.test"}),
            "key-r",
        )
        .await;
    gw.handle.shutdown().await.unwrap();
    let gw = Gw::with(Sandbox::open(&path).unwrap(), None).await;
    assert_eq!(
        gw.ok("products.retrieve", Some(&prod), json!({})).await["name"],
        "Kept"
    );
    assert_eq!(
        gw.ok("prices.retrieve", Some(&price), json!({})).await["unit_amount"],
        700
    );
    let (_, replay) = gw
        .keyed(
            "customers.create",
            None,
            json!({"email": "k@x.test"}),
            "key-r",
        )
        .await;
    assert_eq!(replay, first);
    let newest = gw
        .ok("products.create", None, json!({"name": "After"}))
        .await;
    let list = gw.ok("products.list", None, json!({})).await;
    assert_eq!(
        ids(&list),
        vec![newest["id"].as_str().unwrap().to_string(), prod]
    );
}

/// The example binary, built on demand when `cargo test` was asked for this test alone.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("sandbox_gateway{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", "sandbox_gateway"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

fn start_child(bin: &std::path::Path, db: &std::path::Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(bin)
        .args(["--addr", "127.0.0.1:0", "--data"])
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    (child, base)
}

#[tokio::test]
async fn every_acknowledged_write_survives_kill_9() {
    let bin = example_binary();
    let db = temp_db("kill9");
    let (mut child, base) = start_child(&bin, &db);
    let routes = RouteTable::embedded();
    let http = reqwest::Client::new();
    let connect = altan_pay::gateway::sandbox::derived_connect_id("acc_kill");
    let url = |base: &str, op: &str, id: Option<&str>| {
        let values = RouteValues {
            account_id: Some("acc_kill"),
            id,
            stripe_connect_id: Some(&connect),
        };
        format!("{base}{}", routes.get(op).unwrap().expand(&values).unwrap())
    };
    let mut acked = Vec::new();
    for i in 0..40 {
        let body = json!({"payload": {"name": format!("p{i}"), "metadata": {"i": i.to_string()}}});
        let resp = http
            .post(url(&base, "products.create", None))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.unwrap();
        acked.push(v["id"].as_str().unwrap().to_string());
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let (mut child, base) = start_child(&bin, &db);
    for id in &acked {
        let resp = http
            .get(url(&base, "products.retrieve", Some(id)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{id} lost after kill -9");
    }
    let list: Value = http
        .get(format!("{}&limit=100", url(&base, "products.list", None)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), acked.len());
    assert_eq!(list["data"][0]["id"], json!(acked.last().unwrap()));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A deterministic sandbox gives the same ids to the same requests, whatever their order,
/// and a fixed `created`; two sandboxes with other seeds differ.
#[tokio::test]
async fn deterministic_sandbox_repeats_ids_regardless_of_order() {
    use altan_pay::gateway::{PayRequest, Sandbox, sandbox::DETERMINISTIC_CLOCK};
    fn create(name: &str, key: &str) -> PayRequest {
        let mut params = serde_json::Map::new();
        params.insert("name".into(), serde_json::json!(name));
        PayRequest {
            operation: "products.create".into(),
            account_id: "ws_1".into(),
            stripe_connect_id: Some(altan_pay::gateway::sandbox::derived_connect_id("ws_1")),
            id: None,
            params,
            idempotency_key: Some(key.into()),
        }
    }
    let run = |seed: u64, reversed: bool| {
        let sandbox = Sandbox::in_memory().deterministic(seed);
        let mut reqs = [create("A", "k1"), create("B", "k2")];
        if reversed {
            reqs.reverse();
        }
        let mut ids: Vec<(String, String, i64)> = reqs
            .iter()
            .map(|r| {
                let body = sandbox.handle_now(r).body;
                (
                    body["name"].as_str().unwrap().to_string(),
                    body["id"].as_str().unwrap().to_string(),
                    body["created"].as_i64().unwrap(),
                )
            })
            .collect();
        ids.sort();
        ids
    };
    let first = run(7, false);
    assert_eq!(first, run(7, true), "same ids in either order");
    assert!(
        first
            .iter()
            .all(|(_, _, created)| *created == DETERMINISTIC_CLOCK)
    );
    assert_ne!(first[0].1, first[1].1);
    assert_ne!(first, run(8, false), "another seed, other ids");
    assert_ne!(
        run(7, false)[0].1,
        {
            let s = Sandbox::in_memory();
            s.handle_now(&create("A", "k1")).body["id"]
                .as_str()
                .unwrap()
                .to_string()
        },
        "the ordinary sandbox stays random"
    );
}
