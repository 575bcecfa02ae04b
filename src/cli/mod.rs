//! The command line: parses flags and environment, then calls into the library.
//! Each subcommand is a short function; none holds logic the library lacks. Only the binary
//! compiles this folder: clap and exit codes stay out of the library.

pub mod flags;

use std::path::PathBuf;
use std::process::ExitCode;

use altan_pay::config::{pay_setup, render_prompt};
use altan_pay::tools::{ToolContext, ToolEnv, ToolSet};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use altan_pay::transcript::cli as transcript;
use flags::PayArgs;

#[derive(Parser, Debug)]
#[command(
    name = "altan-pay",
    version,
    about = "A runtime for the Altan Pay agent: Stripe tools over the Altan Pay API."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the tool definitions exactly as they are sent to the model.
    Tools {
        /// JSON output (the OpenAI `tools` array); without it, one line per tool.
        #[arg(long)]
        json: bool,
    },
    /// Print the rendered system prompt.
    Prompt {
        /// A prompt directory in Altan's layout (templates/*.md, blocks/*.yaml).
        #[arg(long, value_name = "DIR")]
        prompts: Option<PathBuf>,
        /// The template to render.
        #[arg(long, default_value = altan_pay::prompt::DEFAULT_TEMPLATE)]
        template: String,
    },
    /// Run one tool exactly as a model's call would run, and print its result as JSON.
    Call(CallArgs),
    /// Serve the tools over MCP on stdin/stdout, for one account (desktop MCP clients).
    Mcp(McpArgs),
    /// Talk to the agent in the terminal (live model; the Altan Pay API or `--sandbox`).
    Chat(ChatArgs),
    /// Run the Altan Pay API gateway (the embedded sandbox or a Stripe upstream).
    Gateway(flags::GatewayArgs),
    /// The main job end to end: a bundled scenario on the embedded sandbox, printed.
    Demo,
    /// Replay recorded transcripts; ends with `N passed, M failed`.
    Replay {
        /// Transcript files (a directory means its *.json files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a scenario with the live model (OPENAI_*) and write it as a transcript.
    Record {
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Stream the model's answers (recorded as chunk lists).
        #[arg(long)]
        stream: bool,
    },
    /// Score the scenarios against the live model (OPENAI_*).
    Eval {
        #[arg(long, value_name = "DIR", default_value = transcript::DEFAULT_SCENARIOS)]
        scenarios: PathBuf,
    },
    /// Run the chat endpoint: the native thread API and the OpenAI-compatible API.
    Serve(Box<flags::ServeArgs>),
    /// Compare the database mirror with Stripe: drift, the sync plan, and database-wins pushes.
    Reconcile(flags::ReconcileArgs),
    /// Print the PostgreSQL DDL of the database mirror, derived from the sync mapping.
    Schema(flags::SchemaArgs),
    /// Apply one sync plan to the PostgreSQL mirror and print its acknowledgement.
    Apply(flags::ApplyArgs),
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub pay: PayArgs,
    /// The Altan account (workspace) id; with --sandbox, `ws_demo` when absent.
    #[arg(long)]
    pub account_id: Option<String>,
    /// Directory for the room's plans (one plan.md per workspace).
    #[arg(long, default_value = "altan-pay-plans")]
    pub plans_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// Tool name, e.g. create_product (see `altan-pay tools`).
    pub tool: String,
    /// The arguments as one JSON object.
    #[arg(default_value = "{}")]
    pub arguments: String,
    #[command(flatten)]
    pub pay: PayArgs,
    /// The Altan account (workspace) id the call acts for.
    #[arg(long)]
    pub account_id: Option<String>,
    /// The Stripe Connect id; looked up from the account when absent.
    #[arg(long)]
    pub stripe_connect_id: Option<String>,
    /// Conversation id, part of the idempotency key.
    #[arg(long, default_value = "cli")]
    pub conversation_id: String,
    /// Tool call id, the other part of the idempotency key: reuse it to resend safely.
    #[arg(long)]
    pub call_id: Option<String>,
}

/// Why a command could not run at all (exit 2): any library error, or a usage problem the
/// binary names itself. Printed once, by [`main`].
pub type CommandError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Args, Debug)]
pub struct McpArgs {
    #[command(flatten)]
    pub pay: PayArgs,
    /// The Altan account (workspace) id every tool call acts for.
    #[arg(long, env = "ALTAN_PAY_ACCOUNT_ID")]
    pub account_id: String,
    /// The Stripe Connect id; looked up from the account when absent.
    #[arg(long)]
    pub stripe_connect_id: Option<String>,
    /// SQLite file for the conversations and writes of unknown outcome (kept across
    /// restarts); in memory when absent.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// Sign every sync plan (HMAC-SHA256), as `serve --plan-signing-key` does.
    #[arg(
        long,
        env = "ALTAN_PAY_PLAN_SIGNING_KEY",
        hide_env_values = true,
        value_parser = altan_pay::sync::PlanSigningKey::parse_arg
    )]
    pub plan_signing_key: Option<altan_pay::sync::PlanSigningKey>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Kept to the end: dropping it flushes the spans not yet exported.
    let _telemetry = altan_pay::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command; `Err` is a usage or setup problem (exit 2).
pub async fn run(cli: Cli) -> Result<ExitCode, CommandError> {
    let code = match cli.command {
        Command::Tools { json } => {
            print_tools(json);
            ExitCode::SUCCESS
        }
        Command::Prompt { prompts, template } => {
            print!("{}", render_prompt(prompts.as_deref(), &template)?);
            ExitCode::SUCCESS
        }
        Command::Call(args) => call(args).await?,
        Command::Mcp(args) => {
            altan_pay::mcp::run_stdio(altan_pay::mcp::StdioOptions {
                pay: args.pay.into(),
                account_id: args.account_id,
                stripe_connect_id: args.stripe_connect_id,
                db: args.db,
                plan_signing_key: args.plan_signing_key,
            })
            .await?;
            ExitCode::SUCCESS
        }
        Command::Chat(args) => chat(args).await?,
        Command::Gateway(args) => {
            altan_pay::gateway::run(args.into()).await?;
            ExitCode::SUCCESS
        }
        Command::Demo => passed(transcript::demo().await?),
        Command::Replay { files } => passed(transcript::replay_files(&files).await?),
        Command::Record {
            scenario,
            out,
            stream,
        } => passed(transcript::record_file(&scenario, &out, stream).await?),
        Command::Eval { scenarios } => passed(transcript::eval_dir(&scenarios).await?),
        Command::Serve(args) => {
            altan_pay::server::run((*args).into()).await?;
            ExitCode::SUCCESS
        }
        Command::Reconcile(args) => {
            print!(
                "{}",
                altan_pay::events::reconcile::execute(args.into()).await?
            );
            ExitCode::SUCCESS
        }
        Command::Schema(args) => {
            print!("{}", altan_pay::mirror::ddl_for(&args.into())?);
            ExitCode::SUCCESS
        }
        Command::Apply(args) => apply(args.into()).await?,
    };
    Ok(code)
}

/// Exit 0 when everything passed, 1 when something failed.
fn passed(all_passed: bool) -> ExitCode {
    if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the acknowledgement; exit 0 when applied, 1 when failed (the reason on stderr too).
async fn apply(args: altan_pay::mirror::ApplyOptions) -> Result<ExitCode, CommandError> {
    let (ack, result) = altan_pay::mirror::apply_file(&args).await?;
    println!("{}", ack.message);
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("altan-pay apply: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_tools(json: bool) {
    let tools = ToolSet::altan_pay();
    if json {
        print!("{}", tools.to_json_text());
    } else {
        for def in tools.definitions() {
            println!("{:<34} {}", def.name, first_sentence(&def.description));
        }
    }
}

fn first_sentence(text: &str) -> &str {
    text.split_once(". ").map_or(text, |(first, _)| first)
}

async fn call(args: CallArgs) -> Result<ExitCode, CommandError> {
    let tools = ToolSet::altan_pay();
    if tools.get(&args.tool).is_none() {
        return Err(format!(
            "no tool named `{}`; `altan-pay tools` lists them",
            args.tool
        )
        .into());
    }
    let setup = pay_setup(&args.pay.into()).await?;
    let env = ToolEnv {
        pay: setup.client.clone(),
    };
    let ctx = ToolContext {
        conversation_id: args.conversation_id,
        tool_call_id: args
            .call_id
            .unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple())),
        account_id: args.account_id,
        stripe_connect_id: args.stripe_connect_id,
    };
    let output = tools.call(&env, &ctx, &args.tool, &args.arguments).await;
    println!(
        "{}",
        serde_json::to_string_pretty(&altan_pay::tools::model_content(&output))
            .unwrap_or_else(|_| Value::Null.to_string())
    );
    drop(setup);
    Ok(if output.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn chat(args: ChatArgs) -> Result<ExitCode, CommandError> {
    let (model, _) = altan_pay::config::live_model()?;
    let setup = pay_setup(&args.pay.into()).await?;
    let account_id = match (&args.account_id, setup.sandbox.is_some()) {
        (Some(id), _) => Some(id.clone()),
        (None, true) => Some("ws_demo".to_string()),
        (None, false) => None,
    };
    let agent = altan_pay::agent::Agent::builder()
        .model(std::sync::Arc::new(model))
        .pay(setup.client.clone())
        .plans(altan_pay::tools::plan::PlanStore::directory(
            &args.plans_dir,
        ))
        .build()?;
    altan_pay::chat::run(agent, altan_pay::chat::terminal_context(account_id)).await?;
    drop(setup);
    Ok(ExitCode::SUCCESS)
}
