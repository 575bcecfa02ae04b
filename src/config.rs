//! Set-up that several commands share: where the Altan Pay API is (or an embedded sandbox),
//! the rendered system prompt, and the live model from the environment.
//! The binary parses flags into these settings (`server::run`, `events::reconcile::execute`
//! and the commands take them); this builds.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::gateway::GatewayHandle;
use crate::model::{OpenAiConfig, OpenAiModel};
use crate::pay::{PayClient, PayConfig, RouteTable};
use crate::prompt::{PromptError, PromptLibrary};

/// Where the Altan Pay API is and how to reach it.
#[derive(Clone)]
pub struct PayOptions {
    /// Base URL of the Altan Pay API (or of a gateway).
    pub pay_base_url: Option<String>,
    /// Run against an embedded sandbox gateway instead of a remote API.
    pub sandbox: bool,
    /// A route table replacing the embedded tools/routes.toml.
    pub routes: Option<PathBuf>,
    /// Bearer token for the Altan Pay API.
    pub token: Option<secrecy::SecretString>,
    /// Seconds before one request attempt is abandoned.
    pub timeout_secs: u64,
    /// The largest Altan Pay API answer read, in bytes (one tool result); a longer one is an
    /// error that names the limit.
    pub max_tool_result_bytes: usize,
}

/// The token never appears in debug output.
impl std::fmt::Debug for PayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayOptions")
            .field("pay_base_url", &self.pay_base_url)
            .field("sandbox", &self.sandbox)
            .field("routes", &self.routes)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("max_tool_result_bytes", &self.max_tool_result_bytes)
            .finish()
    }
}

/// A running Pay API: a remote base URL, or an embedded sandbox gateway kept alive here.
pub struct PaySetup {
    /// The client to call the Pay API with, pointed at the remote URL or the sandbox.
    pub client: PayClient,
    /// Keeps the embedded gateway running while the client is used.
    pub sandbox: Option<GatewayHandle>,
}

/// Why the agent's parts could not be set up from the command's settings; each names the
/// setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The route table file (`--routes`) could not be read.
    #[error(transparent)]
    Routes(#[from] crate::pay::RouteError),
    /// The embedded sandbox gateway (`--sandbox`) could not listen.
    #[error("cannot start the embedded sandbox: {0}")]
    Sandbox(std::io::Error),
    /// `--pay-base-url` is not a URL.
    #[error("--pay-base-url `{url}`: {source}")]
    PayBaseUrl {
        /// The value given.
        url: String,
        /// What is wrong with it.
        source: url::ParseError,
    },
    /// The Altan Pay client could not be built (its TLS or HTTP settings).
    #[error(transparent)]
    PayClient(#[from] crate::pay::PayError),
    /// The prompt directory (`--prompts`) could not be loaded or rendered.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// No live model is configured in the environment.
    #[error(
        "no live model configured: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (any OpenAI-compatible server), and ALTAN_PAY_MODEL for the model name"
    )]
    NoLiveModel,
    /// The live model client could not be built.
    #[error("model: {0}")]
    Model(#[from] crate::model::ModelError),
}

/// Builds the client from flags; with `--sandbox`, starts an in-process sandbox gateway.
pub async fn pay_setup(args: &PayOptions) -> Result<PaySetup, SetupError> {
    let routes = match &args.routes {
        Some(path) => RouteTable::from_file(path)?,
        None => RouteTable::embedded(),
    };
    let (routes, sandbox) = if args.sandbox {
        let handle = crate::gateway::spawn_sandbox(routes.clone())
            .await
            .map_err(SetupError::Sandbox)?;
        (routes.with_base_url(&handle.base_url), Some(handle))
    } else if let Some(url) = &args.pay_base_url {
        url::Url::parse(url).map_err(|source| SetupError::PayBaseUrl {
            url: url.clone(),
            source,
        })?;
        (routes.with_base_url(url), None)
    } else {
        (routes, None)
    };
    let mut config = PayConfig::new(routes);
    config.token = args
        .token
        .clone()
        .filter(|t| !secrecy::ExposeSecret::expose_secret(t).is_empty());
    config.timeout = Duration::from_secs(args.timeout_secs.max(1));
    config.max_response_bytes = args.max_tool_result_bytes.max(1024);
    let client = PayClient::new(config)?;
    Ok(PaySetup { client, sandbox })
}

/// The system prompt from `--prompts DIR`, or the embedded one.
pub fn render_prompt(dir: Option<&Path>, template: &str) -> Result<String, PromptError> {
    let library = match dir {
        Some(dir) => PromptLibrary::load(dir)?,
        None => PromptLibrary::embedded(),
    };
    library.render(template)
}

/// A live model from the environment, or an error saying what to set.
pub fn live_model() -> Result<(OpenAiModel, OpenAiConfig), SetupError> {
    let config = OpenAiConfig::live_from_env().ok_or(SetupError::NoLiveModel)?;
    let model = OpenAiModel::new(config.clone())?;
    Ok((model, config))
}
