//! A caller's own tools ([`AgentTool`]), added to an agent with `AgentBuilder::tool`: typed
//! arguments with a strict schema, a typed output and error, and the same typed declaration
//! as the catalog's tools ([`Facts`]), which the policy, the write-ahead and the sync plan
//! read exactly as they read the catalog's. A read needs no sync plan; a write gets an
//! idempotency key and, when it declares the table it syncs to, lands in the plan.

use std::future::Future;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    Declaration, DestructiveEffect, ErrorCode, Facts, Tool, ToolContext, ToolDefinition, ToolEnv,
    ToolError, ToolFuture, ToolOutput, ToolSuccess, in_tool_span, parse_arguments, schema,
};
use crate::pay::idempotency_key;
use crate::sync::Effect;

/// A tool of the caller's own: its name, typed arguments (whose doc comment is the
/// description the model reads), what it returns, how it fails, and what it does.
pub trait AgentTool: Send + Sync + 'static {
    /// The name the model calls it by; unique in the agent's tool set.
    const NAME: &'static str;
    /// The arguments; their doc comments are the descriptions the model reads.
    type Args: DeserializeOwned + Serialize + JsonSchema + Send + Sync + 'static;
    /// What a call returns; the model reads it as JSON. For a write that syncs, the Stripe
    /// object it changed.
    type Output: Serialize + Send;
    /// How a call fails, with what the model and the operator read (see [`ToolError`]).
    type Error: Into<ToolError> + Send;
    /// What the tool does (see [`Facts`]): a read, or a write with the object it changes.
    const FACTS: Facts<Self::Args>;
    /// Runs one call.
    fn call(
        &self,
        args: Self::Args,
        call: &OwnCall,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// Where a call of an [`AgentTool`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCall {
    /// The conversation (thread) id.
    pub conversation_id: String,
    /// The account id from the trusted request context, if the caller gave one.
    pub account_id: Option<String>,
    /// For a write: the key that makes a repeat of this call (a replay after a lost answer,
    /// or a retry) apply once. `None` for a read.
    pub idempotency_key: Option<String>,
}

/// Runs an [`AgentTool`] behind [`Tool`], with its definition and declaration built once.
pub struct OwnToolAdapter<T: AgentTool> {
    tool: T,
    definition: ToolDefinition,
    declaration: Declaration,
}

impl<T: AgentTool> OwnToolAdapter<T> {
    /// Wraps `tool`, building the definition the model reads (the strict schema of `T::Args`)
    /// and the declaration, once.
    pub fn new(tool: T) -> OwnToolAdapter<T> {
        let (mut parameters, description) = schema::strict_schema_for::<T::Args>();
        if T::FACTS.action != super::Action::Update {
            schema::drop_update_notes(&mut parameters);
        }
        OwnToolAdapter {
            tool,
            definition: ToolDefinition {
                name: T::NAME,
                description,
                parameters,
            },
            declaration: T::FACTS.declaration(),
        }
    }

    fn parse(arguments: &str) -> Result<T::Args, ToolError> {
        Self::parse_map(parse_arguments(T::NAME, arguments)?)
    }

    fn parse_map(raw: Map<String, Value>) -> Result<T::Args, ToolError> {
        serde_json::from_value(Value::Object(raw)).map_err(|e| {
            ToolError::invalid(None, format!("invalid arguments for {}: {e}", T::NAME))
        })
    }

    /// Runs a call with its parsed arguments (or the error they are).
    async fn run(&self, ctx: &ToolContext, args: Result<T::Args, ToolError>) -> ToolOutput {
        let args = args?;
        let writes = T::FACTS.action.writes();
        // A change is made for the account of the trusted context, never another.
        let account_id = match (&ctx.account_id, writes) {
            (Some(id), _) => Some(id.clone()),
            (None, false) => None,
            (None, true) => {
                return Err(ToolError::new(
                    ErrorCode::MissingAccountId,
                    "No account id is known for this conversation. Ask @Altan for the account id (workspace id) and do not guess it.",
                ));
            }
        };
        let call = OwnCall {
            conversation_id: ctx.conversation_id.clone(),
            account_id: account_id.clone(),
            idempotency_key: writes
                .then(|| idempotency_key(&ctx.conversation_id, &ctx.tool_call_id, T::NAME)),
        };
        let output = self.tool.call(args, &call).await.map_err(Into::into)?;
        let content = serde_json::to_value(&output).map_err(|e| {
            ToolError::new(
                ErrorCode::Internal,
                format!("{} returned a result that cannot be encoded: {e}", T::NAME),
            )
        })?;
        let effect = match (T::FACTS.syncs, account_id) {
            (Some(_), Some(account_id)) if writes => Some(Effect {
                operation: T::FACTS.routes.first().copied().unwrap_or(T::NAME),
                kind: T::FACTS.action.route_kind(),
                account_id,
                stripe_connect_id: ctx.stripe_connect_id.clone(),
                object: content.clone(),
            }),
            _ => None,
        };
        Ok(ToolSuccess::new(content, effect))
    }
}

impl<T: AgentTool> Tool for OwnToolAdapter<T> {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    fn destructive(&self, arguments: &str) -> Option<DestructiveEffect> {
        Self::parse(arguments)
            .ok()
            .and_then(|args| T::FACTS.effect_of(&args))
    }

    fn call<'a>(
        &'a self,
        _env: &'a ToolEnv,
        ctx: &'a ToolContext,
        arguments: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        in_tool_span(T::NAME, ctx, self.run(ctx, Self::parse(arguments)))
    }

    /// A read whose arguments take `{"id": ...}` verifies the objects other tools change.
    fn retrieve<'a>(
        &'a self,
        _env: &'a ToolEnv,
        ctx: &'a ToolContext,
        id: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        let by_id = Map::from_iter([("id".to_string(), Value::from(id))]);
        in_tool_span(T::NAME, ctx, self.run(ctx, Self::parse_map(by_id)))
    }
}
