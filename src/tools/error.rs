//! Tool failures, split into what the model reads (and can act on) and what the operator
//! reads (and can debug), with who must act and whether a retry can help in one table.

use serde_json::{Value, json};

use crate::pay::PayError;

/// Why a tool call did not produce a Stripe result. Each code has one row in
/// [`ErrorCode::disposition`]; nothing else decides retryability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The arguments are wrong (JSON, types, values); nothing was sent.
    InvalidArguments,
    /// No account id in the context or the arguments.
    MissingAccountId,
    /// The arguments name another account than the trusted context.
    AccountMismatch,
    /// A tool name that does not exist.
    UnknownTool,
    /// Stripe refused the request as invalid (4xx other than auth, not found, rate limit).
    StripeInvalidRequest,
    /// The object does not exist in this Stripe account.
    NotFound,
    /// 429, 5xx, timeouts and lost connections, after the client's own retries.
    Unavailable,
    /// The Altan Pay API refused the credentials (401/403).
    NotAuthorized,
    /// The Altan Pay API answered something that is not a usable result.
    BadResponse,
    /// A bug or a setup mistake on our side.
    Internal,
}

/// Who has to act on a failure, in pydantic-ai's three kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The model can fix its call and try again.
    ModelRetry,
    /// Report it: the model tells the user (and may try later), the operator is told too.
    Report,
    /// A bug: propagate to the operator; the model only says the action failed.
    Bug,
}

/// What a failure means: one row of [`ErrorCode::disposition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureRule {
    /// Who has to act.
    pub act: Disposition,
    /// Whether resending the same call can help.
    pub retry_helps: bool,
    /// Whether the model's call itself could not be run (bad arguments, an unknown tool, a
    /// request Stripe calls invalid): the turn stops after too many of these in a row.
    pub malformed_call: bool,
    /// Whether Stripe refused the request itself, so a write with this failure did not apply
    /// (unless the error says its outcome is unknown): an uncertain write it repeats settles.
    pub refused_outright: bool,
}

impl ErrorCode {
    /// The one table of who acts, whether resending the same call can help, and whether the
    /// call itself was malformed. The engine, the tools' logs and the model's `next` read it.
    pub fn disposition(self) -> FailureRule {
        use Disposition::*;
        let rule = |act, retry_helps, malformed_call, refused_outright| FailureRule {
            act,
            retry_helps,
            malformed_call,
            refused_outright,
        };
        // Columns: who acts, resending helps, the call was malformed, Stripe refused it.
        match self {
            ErrorCode::InvalidArguments => rule(ModelRetry, false, true, false),
            ErrorCode::MissingAccountId => rule(ModelRetry, false, false, false),
            ErrorCode::AccountMismatch => rule(ModelRetry, false, false, false),
            ErrorCode::UnknownTool => rule(ModelRetry, false, true, false),
            ErrorCode::StripeInvalidRequest => rule(ModelRetry, false, true, true),
            ErrorCode::NotFound => rule(ModelRetry, false, false, true),
            ErrorCode::Unavailable => rule(Report, true, false, false),
            ErrorCode::NotAuthorized => rule(Report, false, false, false),
            ErrorCode::BadResponse => rule(Report, false, false, false),
            ErrorCode::Internal => rule(Bug, false, false, false),
        }
    }
}

/// A failed tool call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {operator_detail}")]
pub struct ToolError {
    /// Why it failed; [`ErrorCode::disposition`] says who acts and whether a retry helps.
    pub code: ErrorCode,
    /// What the model reads: what went wrong and what to do next.
    pub model_message: String,
    /// The Stripe parameter at fault, when known.
    pub param: Option<String>,
    /// What the operator reads in logs: the full technical story.
    pub operator_detail: String,
    /// For mutations: Stripe may have applied the change although no result came back.
    pub outcome_unknown: bool,
}

impl ToolError {
    /// A failure whose model message is also the operator's detail, with no parameter named.
    pub fn new(code: ErrorCode, model_message: impl Into<String>) -> ToolError {
        let model_message = model_message.into();
        ToolError {
            code,
            operator_detail: model_message.clone(),
            model_message,
            param: None,
            outcome_unknown: false,
        }
    }

    /// Bad arguments ([`ErrorCode::InvalidArguments`]): `message` names the problem and the fix,
    /// `param` the argument at fault when there is one. Nothing was sent.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ToolError {
        let mut e = ToolError::new(ErrorCode::InvalidArguments, message);
        e.param = param.map(str::to_string);
        e
    }

    /// Replaces what the operator reads in logs, leaving the model's message as it is.
    pub fn with_operator_detail(mut self, detail: impl Into<String>) -> ToolError {
        self.operator_detail = detail.into();
        self
    }

    /// Maps a failed Altan Pay call; `mutation` tells whether an unknown outcome matters.
    pub fn from_pay(error: &PayError, mutation: bool) -> ToolError {
        if let PayError::AfterUncertainAttempt { error: last } = error {
            let mut e = ToolError::from_pay(last, mutation);
            e.operator_detail = error.to_string();
            if mutation && !e.outcome_unknown {
                e.outcome_unknown = true;
                e.model_message = format!(
                    "{} An earlier attempt may already have been applied: list the objects to check before trying again, and tell the user if it is still unclear.",
                    e.model_message
                );
            }
            return e;
        }
        let detail = error.to_string();
        let (code, message, param) = match error {
            PayError::Stripe {
                status, error: e, ..
            } => {
                let stripe_message = e.message.clone().unwrap_or_else(|| "no message".into());
                match status {
                    401 | 403 => (
                        ErrorCode::NotAuthorized,
                        format!(
                            "The Altan Pay API refused access ({stripe_message}). Tell the user and @Altan; do not retry."
                        ),
                        None,
                    ),
                    404 => (
                        ErrorCode::NotFound,
                        format!(
                            "Stripe has no such object: {stripe_message}. Use an id from a Stripe result of this conversation (list the objects to find it)."
                        ),
                        e.param.clone(),
                    ),
                    // 409: another request with the same idempotency key is still running.
                    s if crate::retry::is_retryable_status(*s) || *s == 409 => (
                        ErrorCode::Unavailable,
                        format!("Stripe is unavailable right now ({stripe_message})."),
                        None,
                    ),
                    _ => (
                        ErrorCode::StripeInvalidRequest,
                        format!("Stripe refused the request: {stripe_message}"),
                        e.param.clone(),
                    ),
                }
            }
            PayError::Http { status, .. }
                if (400..500).contains(status) && *status != 429 && *status != 409 =>
            {
                (
                    ErrorCode::StripeInvalidRequest,
                    format!("The Altan Pay API refused the request with HTTP {status}."),
                    None,
                )
            }
            PayError::Http { .. } | PayError::Timeout { .. } | PayError::Connect { .. } => (
                ErrorCode::Unavailable,
                "The Altan Pay API could not be reached or did not answer in time.".to_string(),
                None,
            ),
            PayError::InvalidResponse { .. } => (
                ErrorCode::BadResponse,
                "The Altan Pay API gave an answer that could not be read.".to_string(),
                None,
            ),
            PayError::AfterUncertainAttempt { .. } | PayError::Route(_) | PayError::Config(_) => (
                ErrorCode::Internal,
                "The action could not be sent because of a configuration problem.".to_string(),
                None,
            ),
        };
        let outcome_unknown = mutation && error.outcome_unknown();
        let message = if outcome_unknown {
            format!(
                "{message} The change may or may not have been applied: list the objects to check before trying again, and tell the user if it is still unclear."
            )
        } else if code == ErrorCode::Unavailable {
            format!("{message} Nothing was changed; try again later or tell the user.")
        } else {
            message
        };
        ToolError {
            code,
            model_message: message,
            param,
            operator_detail: detail,
            outcome_unknown,
        }
    }

    /// The JSON the model reads as the tool result.
    pub fn to_model_json(&self) -> Value {
        let rule = self.code.disposition();
        let mut error = json!({
            "code": self.code,
            "message": self.model_message,
            "next": match rule.act {
                Disposition::ModelRetry => "fix the call and try again",
                Disposition::Report if rule.retry_helps => "try again later or tell the user",
                Disposition::Report => "tell the user",
                Disposition::Bug => "tell the user the action failed",
            },
        });
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        if self.outcome_unknown {
            error["outcome_unknown"] = json!(true);
        }
        json!({ "error": error })
    }
}
