//! The HTTP front of the gateway (axum): matches method and path against the route table,
//! opens the `{"payload": ...}` envelope, calls the backend and writes its Stripe-shaped answer.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::GatewayRefusal;
use super::{Backend, PayRequest, PayResponse};
use crate::pay::form;
use crate::pay::routes::{Method, Route, RouteTable, percent_decode};

/// Largest request body accepted; bigger ones get a Stripe-shaped 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A backend answering this status asks the server to close the connection without an
/// answer (fault injection: a write that committed but whose answer was lost).
pub const DROP_CONNECTION: u16 = 0;

struct App {
    routes: RouteTable,
    backend: Arc<dyn Backend>,
    token: Option<SecretString>,
}

/// Serves the route table on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    routes: RouteTable,
    backend: Arc<dyn Backend>,
    token: Option<SecretString>,
) -> io::Result<()> {
    serve_with_shutdown(listener, routes, backend, token, std::future::pending()).await
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    routes: RouteTable,
    backend: Arc<dyn Backend>,
    token: Option<SecretString>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = Arc::new(App {
        routes,
        backend,
        token: token.filter(|t| !t.expose_secret().is_empty()),
    });
    let router = Router::new().fallback(handle).with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A gateway running in this process; dropping it stops the server.
pub struct GatewayHandle {
    /// `http://127.0.0.1:PORT`, ready for `RouteTable::with_base_url`.
    pub base_url: String,
    /// The loopback address the server listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl GatewayHandle {
    /// Stops accepting, waits (up to 5 s) for requests in flight, then returns.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(io::Error::other(format!("gateway task failed: {e}"))),
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a gateway on 127.0.0.1 with an ephemeral port (tests, `demo`, `serve --sandbox`).
pub async fn spawn(
    routes: RouteTable,
    backend: Arc<dyn Backend>,
    token: Option<SecretString>,
) -> io::Result<GatewayHandle> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    spawn_on(listener, routes, backend, token)
}

/// Starts a gateway on an already bound listener.
pub fn spawn_on(
    listener: TcpListener,
    routes: RouteTable,
    backend: Arc<dyn Backend>,
    token: Option<SecretString>,
) -> io::Result<GatewayHandle> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve_with_shutdown(
        listener, routes, backend, token, signal,
    ));
    Ok(GatewayHandle {
        base_url: format!("http://{addr}"),
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    match route_request(&app, request).await {
        Ok(pay) => app_response(call_backend(&app, pay).await),
        Err(refusal) => refusal.into_response(),
    }
}

/// The backend runs on its own task so a panic in it becomes a 500, not a dropped connection.
async fn call_backend(app: &App, pay: PayRequest) -> PayResponse {
    let backend = app.backend.clone();
    tokio::spawn(async move { backend.handle(pay).await })
        .await
        .unwrap_or_else(|e| {
            GatewayRefusal::internal(format!("the backend failed: {e}")).into_response()
        })
}

/// A refusal made by the HTTP front before the backend is called.
struct Refusal {
    error: GatewayRefusal,
    allow: Option<&'static str>,
}

impl From<GatewayRefusal> for Refusal {
    fn from(error: GatewayRefusal) -> Refusal {
        Refusal { error, allow: None }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = app_response(self.error.into_response());
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

fn app_response(pay: PayResponse) -> Response {
    if pay.status == DROP_CONNECTION {
        // A body that fails at once makes hyper abort the connection before any answer.
        let broken = futures::stream::once(async {
            Err::<axum::body::Bytes, io::Error>(io::Error::other("connection dropped on purpose"))
        });
        return Response::new(Body::from_stream(broken));
    }
    let retry_after = match (pay.status, pay.body["error"]["retry_after"].as_u64()) {
        (429, Some(secs)) => Some(secs),
        _ => None,
    };
    let status = StatusCode::from_u16(pay.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&pay.body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn route_request(app: &App, request: Request) -> Result<PayRequest, Refusal> {
    let (parts, body) = request.into_parts();
    check_token(app.token.as_ref(), &parts.headers)?;
    let path = parts.uri.path().to_string();
    let (operation, route, values) = find_route(&app.routes, parts.method.as_str(), &path)?;
    let mut query = decode_query(parts.uri.query().unwrap_or(""))?;
    let stripe_connect_id = take_route_query(route, &mut query)?;
    let body = read_body(&parts.headers, body).await?;
    let params = match route.method {
        Method::Get => query,
        Method::Post | Method::Delete => {
            if let Some(key) = query.keys().next() {
                return Err(GatewayRefusal::unknown_param(key).param(key.clone()).into());
            }
            open_envelope(&body, route.method)?
        }
    };
    Ok(PayRequest {
        operation: operation.to_string(),
        account_id: values.get("account_id").cloned().unwrap_or_default(),
        stripe_connect_id,
        id: values.get("id").cloned(),
        params,
        idempotency_key: header_text(&parts.headers, "idempotency-key")?,
    })
}

fn check_token(token: Option<&SecretString>, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = token else { return Ok(()) };
    let unauthorized = |message: &str| GatewayRefusal::invalid(message).status(401);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthorized("You did not provide a token. Send `Authorization: Bearer <token>`.")
        })?;
    if !constant_time_eq(given.trim().as_bytes(), token.expose_secret().as_bytes()) {
        return Err(unauthorized("Invalid token provided in the Authorization header.").into());
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Matched<'a> = (&'a str, &'a Route, BTreeMap<String, String>);

/// The route for this method and path; 405 when only the method is wrong, 404 otherwise.
fn find_route<'a>(
    routes: &'a RouteTable,
    method: &str,
    path: &str,
) -> Result<Matched<'a>, Refusal> {
    if let Some(bad) = path.split('/').find(|s| percent_decode(s).is_none()) {
        return Err(GatewayRefusal::invalid(format!(
            "Malformed percent-encoding in the path segment `{bad}`."
        ))
        .into());
    }
    let mut allowed = None;
    for (operation, route) in routes.iter() {
        if let Some(values) = route.match_path(path) {
            if route.method.as_str() == method {
                return Ok((operation, route, values));
            }
            allowed = Some(route.method.as_str());
        }
    }
    match allowed {
        Some(allow) => Err(Refusal {
            error: GatewayRefusal::invalid(format!(
                "{method} is not allowed on {path}; this route only accepts {allow}."
            ))
            .status(405),
            allow: Some(allow),
        }),
        None => Err(GatewayRefusal::invalid(format!(
            "Unrecognized request URL ({method}: {path}). It is not a route of the Altan Pay API table."
        ))
        .status(404)
        .into()),
    }
}

fn decode_query(query: &str) -> Result<Map<String, Value>, Refusal> {
    match form::decode(query) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Ok(Map::new()),
        Err(e) => Err(
            GatewayRefusal::invalid(format!("Invalid query string: {e}"))
                .param(e.key)
                .into(),
        ),
    }
}

/// Removes the route's own query parameters and returns `stripe_connect_id` when it has one.
fn take_route_query(
    route: &Route,
    query: &mut Map<String, Value>,
) -> Result<Option<String>, Refusal> {
    let mut connect = None;
    for (name, value) in route.query_template() {
        let given = query.remove(name);
        if value != "{stripe_connect_id}" {
            continue;
        }
        connect = match given {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::String(_)) | None => return Err(GatewayRefusal::missing_param(name).into()),
            Some(_) => {
                return Err(GatewayRefusal::invalid(format!(
                    "Invalid {name}: expected a single string value."
                ))
                .param(name)
                .into());
            }
        };
    }
    Ok(connect)
}

async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        GatewayRefusal::invalid(format!(
            "The request body is larger than {MAX_BODY_BYTES} bytes (or could not be read)."
        ))
        .status(413)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large().into());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large().into())
}

/// `{"payload": {...}}` for POST; DELETE also accepts an empty body.
fn open_envelope(body: &[u8], method: Method) -> Result<Map<String, Value>, Refusal> {
    let shape = "expected a JSON object {\"payload\": {...Stripe parameters...}}";
    if body.iter().all(u8::is_ascii_whitespace) {
        if method == Method::Delete {
            return Ok(Map::new());
        }
        return Err(
            GatewayRefusal::invalid(format!("The request body is empty; {shape}."))
                .code("parameter_missing")
                .param("payload")
                .into(),
        );
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayRefusal::invalid(format!(
            "The request body is not valid JSON ({e}); {shape}."
        ))
    })?;
    let Value::Object(mut top) = value else {
        return Err(GatewayRefusal::invalid(format!(
            "The request body is a JSON {}; {shape}.",
            kind_of(&value)
        ))
        .into());
    };
    if let Some(extra) = top.keys().find(|k| *k != "payload") {
        return Err(GatewayRefusal::invalid(format!(
            "Received unknown top-level field `{extra}`; {shape}."
        ))
        .code("parameter_unknown")
        .param(extra.clone())
        .into());
    }
    match top.remove("payload") {
        Some(Value::Object(params)) => Ok(params),
        Some(other) => Err(GatewayRefusal::invalid(format!(
            "`payload` must be a JSON object of Stripe parameters, not a {}.",
            kind_of(&other)
        ))
        .param("payload")
        .into()),
        None => Err(GatewayRefusal::invalid(format!(
            "The request body has no `payload`; {shape}."
        ))
        .code("parameter_missing")
        .param("payload")
        .into()),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
            .map_err(|_| {
                GatewayRefusal::invalid(format!("The {name} header is not valid text."))
                    .param(name)
                    .into()
            }),
    }
}
