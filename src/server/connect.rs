//! Each account's Stripe Connect id, resolved by the server and never taken from a caller:
//! from the deployment's binding (`--stripe-account-map acct_1=ws_1`, the same map that says
//! which account a Connect account's Stripe events belong to) or through the Altan Pay API's
//! account lookup (`get_account_stripe_connection_id`), which the Pay client remembers per
//! account. A request that names a Connect id (body context, `X-Altan-Stripe-Connect-Id`,
//! OpenAI `metadata`) is refused with 403 when it is not the resolved one, before anything
//! runs; the turn's context carries the resolved id.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use tracing::warn;

use super::error::ApiError;
use crate::pay::{PayClient, PayError};
use crate::room::AgentContext;

/// Resolves Connect ids for the server; without a Pay client (a server built in-process
/// without [`super::ServerState::resolve_connect_ids`]), no caller-supplied id can be
/// confirmed, so every one is refused and the tools look the id up themselves.
#[derive(Clone, Default)]
pub struct ConnectIds {
    pay: Option<PayClient>,
}

/// `acct_1=ws_1` pairs of `--stripe-account-map`, as (Connect account, Altan account).
pub fn parse_account_map(pairs: &[String]) -> Result<Vec<(String, String)>, String> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(c, a)| (c.trim(), a.trim()))
                .filter(|(c, a)| !c.is_empty() && !a.is_empty())
                .map(|(c, a)| (c.to_string(), a.to_string()))
                .ok_or_else(|| format!("--stripe-account-map: `{pair}` is not ACCT=ACCOUNT"))
        })
        .collect()
}

/// Each account's one Connect account from the map; an account given two is a mistake.
pub fn bindings(map: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (connect, account) in map {
        if let Some(earlier) = out.get(account).filter(|c| *c != connect) {
            return Err(format!(
                "--stripe-account-map: account `{account}` is bound to both `{earlier}` and `{connect}`; an account has one Connect account"
            ));
        }
        out.insert(account.clone(), connect.clone());
    }
    Ok(out)
}

impl ConnectIds {
    /// Looks ids up through `pay`, after seeding its per-account memory with `bindings`
    /// (account → Connect id), which therefore win over the lookup.
    pub fn new(pay: PayClient, bindings: &BTreeMap<String, String>) -> ConnectIds {
        for (account, connect) in bindings {
            pay.remember_connect_id(account, connect);
        }
        ConnectIds { pay: Some(pay) }
    }

    /// Replaces the context's Connect id with the server's for its account, or refuses a
    /// caller-supplied one that is not it. Nothing is sent to the Pay API's Stripe routes.
    pub async fn resolve(&self, context: &mut AgentContext) -> Result<(), ApiError> {
        let given = context.stripe_connect_id.take();
        let Some(account) = context.account_id.as_deref() else {
            return match given {
                None => Ok(()),
                Some(given) => Err(mismatch(format!(
                    "stripe_connect_id `{given}` was sent without an account: the server resolves each account's Connect id itself; name the account (context.account_id or X-Altan-Account-Id) and leave stripe_connect_id out"
                ))),
            };
        };
        let resolved = match &self.pay {
            Some(pay) => pay.stripe_connect_id(account).await.map_err(Some),
            None => Err(None),
        };
        match (resolved, given) {
            (Ok(own), None) => context.stripe_connect_id = Some(own),
            (Ok(own), Some(given)) if own == given => context.stripe_connect_id = Some(own),
            (Ok(own), Some(given)) => {
                return Err(mismatch(format!(
                    "stripe_connect_id `{given}` is not the Stripe Connect id of account `{account}` (the server's is `{own}`); leave stripe_connect_id out, the server resolves it"
                )));
            }
            // The tools look it up themselves when they need it, and report what fails.
            (Err(e), None) => {
                if let Some(e) = e {
                    warn!(account, error = %e, "could not resolve the account's Stripe Connect id");
                }
            }
            (Err(None), Some(given)) => {
                return Err(mismatch(format!(
                    "stripe_connect_id `{given}` cannot be confirmed for account `{account}`: this server resolves Connect ids itself; leave stripe_connect_id out"
                )));
            }
            (Err(Some(e)), Some(given)) => return Err(unconfirmed(account, &given, &e)),
        }
        Ok(())
    }
}

fn mismatch(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "connect_id_mismatch", message)
}

/// The lookup failed: an account without a Connect account is a refusal, an unreachable API
/// a 502 to retry.
fn unconfirmed(account: &str, given: &str, error: &PayError) -> ApiError {
    let status = match error {
        PayError::Stripe { status, .. } | PayError::Http { status, .. }
            if (400..500).contains(status) =>
        {
            StatusCode::FORBIDDEN
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(
        status,
        "connect_id_unconfirmed",
        format!(
            "stripe_connect_id `{given}` cannot be confirmed for account `{account}`: the Altan Pay API's account lookup failed ({error}); leave stripe_connect_id out"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_given_two_connect_accounts_is_refused() {
        let map = parse_account_map(&["acct_1=ws_1".into(), "acct_2=ws_1".into()]).unwrap();
        let err = bindings(&map).unwrap_err();
        assert!(err.contains("ws_1") && err.contains("acct_2"), "{err}");
        assert!(parse_account_map(&["acct_1".into()]).is_err());
        let map = parse_account_map(&["acct_1 = ws_1".into(), "acct_2=ws_2".into()]).unwrap();
        let bound = bindings(&map).unwrap();
        assert_eq!(bound["ws_1"], "acct_1");
        assert_eq!(bound["ws_2"], "acct_2");
    }

    #[tokio::test]
    async fn without_a_pay_client_a_caller_supplied_id_is_refused() {
        let ids = ConnectIds::default();
        let mut context = AgentContext {
            account_id: Some("ws_1".into()),
            stripe_connect_id: Some("acct_x".into()),
            ..AgentContext::default()
        };
        let err = ids.resolve(&mut context).await.unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        let mut context = AgentContext {
            account_id: Some("ws_1".into()),
            ..AgentContext::default()
        };
        ids.resolve(&mut context).await.unwrap();
        assert_eq!(context.stripe_connect_id, None);
    }

    #[tokio::test]
    async fn a_bound_account_resolves_without_a_lookup_and_refuses_another_id() {
        // No base URL can answer: a lookup would fail.
        let routes = crate::pay::RouteTable::embedded().with_base_url("http://127.0.0.1:9");
        let pay = PayClient::new(crate::pay::PayConfig::new(routes)).unwrap();
        let bound = bindings(&parse_account_map(&["acct_1=ws_1".into()]).unwrap()).unwrap();
        let ids = ConnectIds::new(pay, &bound);
        let mut context = AgentContext {
            account_id: Some("ws_1".into()),
            ..AgentContext::default()
        };
        ids.resolve(&mut context).await.unwrap();
        assert_eq!(context.stripe_connect_id.as_deref(), Some("acct_1"));
        context.stripe_connect_id = Some("acct_2".into());
        let err = ids.resolve(&mut context).await.unwrap_err();
        assert_eq!(err.status, StatusCode::FORBIDDEN);
        assert!(
            err.message.contains("acct_2") && err.message.contains("ws_1"),
            "{}",
            err.message
        );
        let mut nameless = AgentContext {
            stripe_connect_id: Some("acct_1".into()),
            ..AgentContext::default()
        };
        assert_eq!(
            ids.resolve(&mut nameless).await.unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }
}
