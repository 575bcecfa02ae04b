//! Stripe-shaped errors (`{"error": {type, code, message, param}}`) with Stripe's HTTP statuses,
//! shared by the HTTP front and the sandbox so every refusal looks like one Stripe would send.

use serde_json::{Value, json};

use super::PayResponse;

/// One Stripe error, before it becomes a response body.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayRefusal {
    /// The HTTP status Stripe answers with for this error (400, 401, 404, 409, 500, ...).
    pub status: u16,
    /// Stripe's error `type`: `invalid_request_error`, `idempotency_error` or `api_error`.
    pub kind: &'static str,
    /// Stripe's error `code`, e.g. `resource_missing` or `parameter_missing`.
    pub code: Option<&'static str>,
    /// The sentence for people, sent as `message`.
    pub message: String,
    /// The request parameter at fault, e.g. `line_items[0][price]`.
    pub param: Option<String>,
}

impl GatewayRefusal {
    /// A 400 `invalid_request_error`, the most common refusal.
    pub fn invalid(message: impl Into<String>) -> GatewayRefusal {
        GatewayRefusal {
            status: 400,
            kind: "invalid_request_error",
            code: None,
            message: message.into(),
            param: None,
        }
    }

    /// Sets Stripe's error `code`.
    pub fn code(mut self, code: &'static str) -> GatewayRefusal {
        self.code = Some(code);
        self
    }

    /// Names the parameter at fault.
    pub fn param(mut self, param: impl Into<String>) -> GatewayRefusal {
        self.param = Some(param.into());
        self
    }

    /// Replaces the HTTP status.
    pub fn status(mut self, status: u16) -> GatewayRefusal {
        self.status = status;
        self
    }

    /// Stripe's 404 for an id that does not exist in this account.
    pub fn missing(object: &str, id: &str) -> GatewayRefusal {
        GatewayRefusal::invalid(format!("No such {object}: '{id}'"))
            .code("resource_missing")
            .status(404)
            .param("id")
    }

    /// `Received unknown parameter: x`, with the param named.
    pub fn unknown_param(path: &str) -> GatewayRefusal {
        GatewayRefusal::invalid(format!("Received unknown parameter: {path}"))
            .code("parameter_unknown")
            .param(path)
    }

    /// `Missing required param: x.`, with the param named.
    pub fn missing_param(path: &str) -> GatewayRefusal {
        GatewayRefusal::invalid(format!("Missing required param: {path}."))
            .code("parameter_missing")
            .param(path)
    }

    /// A server-side failure (storage); never caused by the caller's input.
    pub fn internal(message: impl Into<String>) -> GatewayRefusal {
        GatewayRefusal {
            status: 500,
            kind: "api_error",
            code: None,
            message: message.into(),
            param: None,
        }
    }

    /// The JSON body Stripe would send: `{"error": {type, message, code?, param?}}`.
    pub fn body(&self) -> Value {
        let mut error = json!({ "type": self.kind, "message": self.message });
        if let Some(code) = self.code {
            error["code"] = json!(code);
        }
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        json!({ "error": error })
    }

    /// The refusal as a [`PayResponse`] with its status and body.
    pub fn into_response(self) -> PayResponse {
        PayResponse {
            status: self.status,
            body: self.body(),
        }
    }
}
