//! The OpenAI-compatible chat model (OpenAI, vLLM, Ollama, llama.cpp server) on async-openai.
//! Raw JSON both ways (its `byot` calls) so answers that leave fields out still parse.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::Config;
use async_openai::error::{OpenAIError, StreamError};
use async_openai::middleware::HttpRequestFactory;
use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, warn};

use super::responses::{self, ToolCache};
use super::retry::{RetryPolicy, parse_retry_after};
use super::wire::{
    RequestBody, StreamAssembler, deltas_of, error_body_text, excerpt, parse_response,
    request_body_ref,
};
use super::{ChatModel, ChatRequest, ChatResponse, ModelDelta, ModelError, ModelFuture};
use crate::pay::client::read_capped;
use crate::pay::error::{scrub_queries, without_query};

/// OpenAI's own endpoint, used when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The model used when `ALTAN_PAY_MODEL` is not set.
pub const DEFAULT_MODEL: &str = "gpt-4.1-mini";

/// Which OpenAI API the model is driven over (`ALTAN_PAY_MODEL_API`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelApi {
    /// `POST {base}/chat/completions` (`chat`, the default): what every compatible server serves.
    #[default]
    ChatCompletions,
    /// `POST {base}/responses` (`responses`): OpenAI's newer API; reasoning items are carried
    /// between the calls of a turn. See `src/model/responses.rs`.
    Responses,
    /// A value of `ALTAN_PAY_MODEL_API` this build does not know, kept as given so
    /// [`OpenAiModel::new`] refuses it by name instead of falling back silently.
    Unknown(String),
}

impl ModelApi {
    /// `chat` or `responses` (case and surrounding blanks ignored); anything else is
    /// [`ModelApi::Unknown`].
    pub fn from_setting(value: &str) -> ModelApi {
        match value.trim().to_ascii_lowercase().as_str() {
            "chat" => ModelApi::ChatCompletions,
            "responses" => ModelApi::Responses,
            _ => ModelApi::Unknown(value.to_string()),
        }
    }
}

/// Settings of an [`OpenAiModel`]. `Debug` hides the key, so configs can be logged.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Up to and including `/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer ...` when set; local servers usually need none.
    pub api_key: Option<SecretString>,
    /// The model name sent in every request (`gpt-4.1-mini`, a local model's name).
    pub model: String,
    /// Without streaming: the whole call. With streaming: to get the response headers, and
    /// then the longest silence between two chunks.
    pub timeout: Duration,
    /// How often and how long to retry 429, 5xx and transport failures.
    pub retry: RetryPolicy,
    /// `None` leaves the server's default.
    pub temperature: Option<f32>,
    /// Use SSE when the caller asks for deltas. `false` makes one plain request and passes
    /// the answer on as deltas at the end, for servers whose streaming is broken.
    pub stream: bool,
    /// Sent as `max_completion_tokens` on every request, so the server stops the answer there
    /// (`ALTAN_PAY_MAX_COMPLETION_TOKENS`); `None` leaves the server's default.
    pub max_completion_tokens: Option<u32>,
    /// The most answer text kept from one model call, in bytes, for a server that ignores the
    /// token limit (`ALTAN_PAY_MAX_ANSWER_BYTES`): longer text is cut on a character boundary
    /// and marked, and a streamed answer stops being read there.
    pub max_answer_bytes: usize,
    /// Chat Completions or the Responses API (`ALTAN_PAY_MODEL_API=chat|responses`).
    pub api: ModelApi,
}

/// Tokens one answer may use: a long answer of this agent (a table of prices, a plan and
/// the handoff) is well under 2,000 tokens; twice that leaves room and bounds a runaway.
pub const DEFAULT_MAX_COMPLETION_TOKENS: u32 = 4096;
/// Bytes of answer text kept: 4,096 tokens are some 16 KB of text; four times that leaves
/// room for long tokens and stops a server that ignores the token limit.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The largest model response body read (non-streamed); more is an unusable answer.
pub(crate) const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("temperature", &self.temperature)
            .field("stream", &self.stream)
            .field("max_completion_tokens", &self.max_completion_tokens)
            .field("max_answer_bytes", &self.max_answer_bytes)
            .field("api", &self.api)
            .finish()
    }
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_key: None,
            model: DEFAULT_MODEL.to_string(),
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::model_default(),
            temperature: None,
            stream: true,
            max_completion_tokens: Some(DEFAULT_MAX_COMPLETION_TOKENS),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            api: ModelApi::ChatCompletions,
        }
    }
}

impl OpenAiConfig {
    /// Defaults overridden by `OPENAI_BASE_URL`, `OPENAI_API_KEY` and `ALTAN_PAY_MODEL`
    /// (an empty variable counts as unset).
    pub fn from_env() -> OpenAiConfig {
        let mut config = OpenAiConfig::default();
        if let Some(url) = env_var("OPENAI_BASE_URL") {
            config.base_url = url;
        }
        config.api_key = env_var("OPENAI_API_KEY").map(SecretString::from);
        if let Some(model) = env_var("ALTAN_PAY_MODEL") {
            config.model = model;
        }
        if let Some(tokens) = env_number::<u32>("ALTAN_PAY_MAX_COMPLETION_TOKENS") {
            config.max_completion_tokens = (tokens > 0).then_some(tokens);
        }
        if let Some(bytes) = env_number::<usize>("ALTAN_PAY_MAX_ANSWER_BYTES") {
            config.max_answer_bytes = bytes.max(1);
        }
        if let Some(api) = env_var("ALTAN_PAY_MODEL_API") {
            config.api = ModelApi::from_setting(&api);
        }
        match env_var("ALTAN_PAY_MODEL_STREAM").as_deref() {
            Some("0" | "false" | "no" | "off") => config.stream = false,
            Some("1" | "true" | "yes" | "on") | None => {}
            Some(other) => {
                warn!("ALTAN_PAY_MODEL_STREAM=`{other}` is not true or false; streaming stays on")
            }
        }
        config
    }

    /// The config from the environment when a live model is configured there (a key or a
    /// base URL is set), `None` otherwise: the demo then replays its recording.
    pub fn live_from_env() -> Option<OpenAiConfig> {
        (env_var("OPENAI_API_KEY").is_some() || env_var("OPENAI_BASE_URL").is_some())
            .then(OpenAiConfig::from_env)
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A number from the environment; a value that is not one is reported and the default kept.
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = env_var(name)?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            warn!("{name}=`{value}` is not a whole number; the default is used");
            None
        }
    }
}

/// Cuts the answer's text to `limit` bytes (on a character boundary) and says so in the text;
/// the call then counts as stopped by length. Storing and relaying 100 MB of model text is
/// worse than a marked cut; a cut rather than an error keeps the sync plan of a turn that
/// already changed Stripe.
fn cut_answer(response: &mut ChatResponse, limit: usize) {
    let Some(text) = response.message.content.as_mut() else {
        return;
    };
    if text.len() <= limit {
        return;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    warn!(
        bytes = text.len(),
        limit, "the model's answer is longer than the limit; cut"
    );
    text.truncate(end);
    text.push_str(&format!(
        "\n\n[answer cut at {limit} bytes: the model wrote more than this runtime keeps]"
    ));
    response.finish_reason = Some(super::FinishReason::Length);
}

/// A [`ChatModel`] over an OpenAI-compatible `/chat/completions` or `/responses` endpoint.
#[derive(Debug)]
pub struct OpenAiModel {
    client: Client<WireConfig>,
    config: OpenAiConfig,
    /// The same HTTP client, for the Responses wire (async-openai's `responses` feature is
    /// not built: its typed API would be bypassed anyway, as `byot` does for chat).
    http: reqwest::Client,
    responses_url: String,
    tools: ToolCache,
}

impl OpenAiModel {
    /// Checks the config (URL, key as a header, a key for OpenAI's own endpoint) and builds
    /// the client; no request is made.
    pub fn new(mut config: OpenAiConfig) -> Result<OpenAiModel, ModelError> {
        let base = config.base_url.trim().trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base)
            .map_err(|e| ModelError::Config(format!("model base URL {base:?} is invalid: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ModelError::Config(format!(
                "model base URL {base:?} must be http or https"
            )));
        }
        if let ModelApi::Unknown(value) = &config.api {
            return Err(ModelError::Config(format!(
                "ALTAN_PAY_MODEL_API={value:?} is not a model API this build knows: use `chat` (Chat Completions, the default) or `responses` (the Responses API)"
            )));
        }
        if config.model.trim().is_empty() {
            return Err(ModelError::Config("the model name is empty".into()));
        }
        config.api_key = config
            .api_key
            .filter(|k| !k.expose_secret().trim().is_empty());
        if config.api_key.is_none() && parsed.host_str() == Some("api.openai.com") {
            return Err(ModelError::Config(
                "OPENAI_API_KEY is not set; OpenAI's endpoint needs one (set OPENAI_BASE_URL for a local server)".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose_secret().trim())).map_err(
                    |_| {
                        ModelError::Config(
                            "OPENAI_API_KEY contains characters a header cannot carry".into(),
                        )
                    },
                )?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .read_timeout(config.timeout)
            .build()
            .map_err(|e| ModelError::Config(format!("cannot build the HTTP client: {e}")))?;
        let wire = WireConfig {
            api_key: config
                .api_key
                .clone()
                .unwrap_or_else(|| SecretString::from("")),
            base: base.clone(),
            headers,
        };
        let responses_url = format!("{base}/responses");
        config.base_url = base;
        // Our own service replaces async-openai's default executor, and with it its
        // built-in retry layer: the only retries are the ones in `complete`.
        let client =
            Client::build(http.clone(), wire).with_http_service(HttpService { http: http.clone() });
        Ok(OpenAiModel {
            client,
            config,
            http,
            responses_url,
            tools: ToolCache::default(),
        })
    }

    /// [`OpenAiConfig::from_env`] then [`OpenAiModel::new`].
    pub fn from_env() -> Result<OpenAiModel, ModelError> {
        OpenAiModel::new(OpenAiConfig::from_env())
    }

    /// The settings this model was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    async fn run(
        &self,
        request: &ChatRequest,
        deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> Result<ChatResponse, ModelError> {
        let streaming = deltas.is_some() && self.config.stream;
        let responses_body = (self.config.api == ModelApi::Responses).then(|| {
            let settings = responses::Settings {
                model: &self.config.model,
                temperature: self.config.temperature,
                max_output_tokens: self.config.max_completion_tokens,
                stream: streaming,
            };
            responses::request_body(settings, request, &self.tools)
        });
        let body = request_body_ref(
            &self.config.model,
            request,
            self.config.temperature,
            streaming,
        )
        .max_completion_tokens(self.config.max_completion_tokens);
        let mut attempt = 1;
        loop {
            debug!(model = %self.config.model, attempt, streaming, "model call");
            let mut forwarded = false;
            let result = match (&deltas, streaming, &responses_body) {
                (Some(tx), true, Some(body)) => {
                    self.responses_call()
                        .stream(body, tx, &mut forwarded, self.config.max_answer_bytes)
                        .await
                }
                (_, _, Some(body)) => self
                    .responses_call()
                    .post(body)
                    .await
                    .and_then(|answer| responses::parse_response(&answer)),
                (Some(tx), true, None) => self.stream_once(&body, tx, &mut forwarded).await,
                _ => self.complete_once(&body).await,
            };
            let error = match result {
                Ok(mut response) => {
                    cut_answer(&mut response, self.config.max_answer_bytes);
                    if let (Some(tx), false) = (&deltas, streaming) {
                        for delta in deltas_of(&response) {
                            let _ = tx.send(delta);
                        }
                    }
                    return Ok(response);
                }
                Err(error) => error,
            };
            // Once pieces went to the caller a retry would send them twice.
            if forwarded {
                return Err(error);
            }
            match self.config.retry.delay_after(attempt, &error) {
                Some(wait) => {
                    warn!(model = %self.config.model, attempt, ?wait, %error, "retrying model call");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => return Err(error),
            }
        }
    }

    async fn complete_once(&self, body: &RequestBody<'_>) -> Result<ChatResponse, ModelError> {
        let chat = self.client.chat();
        let call = chat.create_byot::<&RequestBody<'_>, Value>(body);
        let answer = tokio::time::timeout(self.config.timeout, call)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(map_error)?;
        parse_response(&answer)
    }

    /// A call on the Responses wire, with this model's client, headers and bounds.
    fn responses_call(&self) -> responses::Call<'_, fn(reqwest::Error) -> ModelError> {
        responses::Call {
            http: &self.http,
            url: &self.responses_url,
            headers: self.client.config().headers(),
            timeout: self.config.timeout,
            max_bytes: MAX_RESPONSE_BYTES,
            transport: |e| map_error(OpenAIError::Reqwest(e)),
        }
    }

    async fn stream_once(
        &self,
        body: &RequestBody<'_>,
        tx: &UnboundedSender<ModelDelta>,
        forwarded: &mut bool,
    ) -> Result<ChatResponse, ModelError> {
        let chat = self.client.chat();
        let open = chat.create_stream_byot::<&RequestBody<'_>, Value>(body);
        let mut stream = tokio::time::timeout(self.config.timeout, open)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(map_error)?;
        let mut assembler = StreamAssembler::new();
        // The end of the stream, with or without `[DONE]`, ends the answer; a broken
        // connection comes as an error item.
        // Text past the answer limit is neither passed on nor read: the answer is cut there.
        let limit = self.config.max_answer_bytes;
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(map_error)?;
            let before = assembler.text_len();
            for delta in assembler.push(&chunk)? {
                let delta = match delta {
                    ModelDelta::Text(_) if before >= limit => continue,
                    ModelDelta::Text(mut text) if before + text.len() > limit => {
                        let mut end = limit - before;
                        while !text.is_char_boundary(end) {
                            end -= 1;
                        }
                        text.truncate(end);
                        ModelDelta::Text(text)
                    }
                    other => other,
                };
                *forwarded = true;
                let _ = tx.send(delta);
            }
            if assembler.text_len() > limit {
                break;
            }
        }
        assembler.finish()
    }

    fn timed_out(&self) -> ModelError {
        ModelError::Transport(format!(
            "no answer from {} within {:?}",
            self.config.base_url, self.config.timeout
        ))
    }
}

impl ChatModel for OpenAiModel {
    fn name(&self) -> &str {
        &self.config.model
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: Option<UnboundedSender<ModelDelta>>,
    ) -> ModelFuture<'a, Result<ChatResponse, ModelError>> {
        Box::pin(self.run(request, deltas))
    }
}

/// async-openai's view of our settings. Its own `OpenAIConfig` always sends an
/// `Authorization` header (empty without a key) and panics on a key a header cannot carry.
#[derive(Debug)]
struct WireConfig {
    base: String,
    headers: HeaderMap,
    api_key: SecretString,
}

impl Config for WireConfig {
    fn headers(&self) -> HeaderMap {
        self.headers.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn api_base(&self) -> &str {
        &self.base
    }

    fn api_key(&self) -> &SecretString {
        &self.api_key
    }
}

/// The HTTP layer under async-openai. It sends each request once and turns an error status
/// into [`HttpStatus`], because async-openai drops the `Retry-After` header on its way up.
#[derive(Clone)]
struct HttpService {
    http: reqwest::Client,
}

type HttpFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for HttpService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = HttpFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            let status = response.status();
            if status.is_success() {
                let streamed = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with("text/event-stream"));
                // A stream is bounded as it is read (`max_answer_bytes`); a whole body here.
                return if streamed {
                    Ok(response)
                } else {
                    buffered(response).await
                };
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let mut response = response;
            let body = read_capped(&mut response, ERROR_BODY_BYTES)
                .await
                .map_err(OpenAIError::Reqwest)?
                .unwrap_or_else(|| b"(an error body too large to read)".to_vec());
            Err(OpenAIError::Boxed(Box::new(HttpStatus {
                status: status.as_u16(),
                message: error_body_text(&body),
                retry_after,
            })))
        })
    }
}

/// The most of an error body read: its message is all that is kept.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// The response with its body read whole, at most [`MAX_RESPONSE_BYTES`] of it.
async fn buffered(mut response: reqwest::Response) -> Result<reqwest::Response, OpenAIError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_capped(&mut response, MAX_RESPONSE_BYTES)
        .await
        .map_err(OpenAIError::Reqwest)?
        .ok_or_else(|| {
            OpenAIError::Boxed(Box::new(TooLarge {
                limit: MAX_RESPONSE_BYTES,
            }))
        })?;
    let mut whole = http::Response::new(body);
    *whole.status_mut() = status;
    *whole.headers_mut() = headers;
    Ok(reqwest::Response::from(whole))
}

/// A response body larger than the client reads.
#[derive(Debug, thiserror::Error)]
#[error("the answer is larger than the limit of {limit} bytes")]
struct TooLarge {
    limit: usize,
}

/// An error status with what the retry loop needs from its headers.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {message}")]
struct HttpStatus {
    status: u16,
    message: String,
    retry_after: Option<Duration>,
}

/// Sorts async-openai's errors into the four kinds the engine acts on. No URL's query string
/// survives into the text (it goes into logs).
fn map_error(error: OpenAIError) -> ModelError {
    let error = match error {
        OpenAIError::Reqwest(e) => OpenAIError::Reqwest(without_query(e)),
        other => other,
    };
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<HttpStatus>() {
            Ok(status) => ModelError::Status {
                status: status.status,
                message: status.message,
                retry_after: status.retry_after,
            },
            Err(other) => match other.downcast::<TooLarge>() {
                Ok(too_large) => ModelError::BadResponse(too_large.to_string()),
                Err(other) => ModelError::Transport(scrub_queries(&error_chain(other.as_ref()))),
            },
        },
        OpenAIError::Reqwest(e) if e.is_builder() => {
            ModelError::Config(format!("cannot build the request: {}", error_chain(&e)))
        }
        OpenAIError::Reqwest(e) => ModelError::Transport(error_chain(&e)),
        OpenAIError::ApiError(api) => ModelError::Status {
            status: api.status_code.as_u16(),
            message: scrub_queries(&api.api_error.message),
            retry_after: None,
        },
        OpenAIError::JSONDeserialize(e, content) => ModelError::BadResponse(format!(
            "the body is not JSON ({e}): {}",
            if content.trim().is_empty() {
                "(empty body)".to_string()
            } else {
                excerpt(content.trim())
            }
        )),
        OpenAIError::StreamError(stream) => match *stream {
            StreamError::EventStream(message) => {
                ModelError::Transport(format!("the stream broke: {message}"))
            }
            StreamError::UnknownEvent(event) => ModelError::BadResponse(format!(
                "unexpected stream event {:?}: {}",
                event.event,
                excerpt(&event.data)
            )),
        },
        OpenAIError::InvalidArgument(message) => ModelError::Config(message),
        other => ModelError::Transport(other.to_string()),
    }
}

/// The error and its causes on one line: reqwest (and deadpool) hide the useful part in the
/// source.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
