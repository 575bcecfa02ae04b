//! The tools the model calls: typed arguments with JSON schemas, validation before any HTTP,
//! the Altan Pay call, and a result split into what the model reads and what Stripe changed.

pub(crate) mod args;
pub mod catalog;
pub mod declare;
pub mod digest;
pub mod error;
pub mod open;
pub mod own;
pub mod plan;
pub mod schema;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tracing::{Instrument, info_span};

use crate::pay::{PayCall, PayClient, RouteKind, idempotency_key};
use crate::stripe::json_kind;
pub use crate::sync::Effect;
pub use declare::{
    Action, ArgDestroys, Declaration, DestroysFact, DestructiveEffect, Exposure, Facts, Reach,
    Target,
};
pub use error::{Disposition, ErrorCode, FailureRule, ToolError};
pub use open::Opened;
pub use own::{AgentTool, OwnCall, OwnToolAdapter};

/// Where a tool call comes from and which account it may act for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolContext {
    /// The conversation (thread) id; part of every idempotency key.
    pub conversation_id: String,
    /// The model's id for this tool call; the other part of the idempotency key.
    pub tool_call_id: String,
    /// The account id from the trusted request context, if the caller gave one.
    pub account_id: Option<String>,
    /// The Stripe Connect id from the trusted request context, if the caller gave one.
    pub stripe_connect_id: Option<String>,
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDefinition {
    /// The name the model calls the tool by (`create_product`), unique in a [`ToolSet`].
    pub name: &'static str,
    /// What the tool does, as the model reads it (a Stripe tool's: the doc comment of its
    /// arguments type, on one line).
    pub description: String,
    /// The JSON schema of the arguments object the model sends.
    pub parameters: Value,
}

impl ToolDefinition {
    /// OpenAI's `tools[]` entry.
    pub fn to_openai(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "strict": true,
            }
        })
    }

    /// The opt-in compact entry: no strict mode, and properties that accept `null` are not
    /// `required` (see [`schema::compact_schema`]); fewer tokens on every model call.
    pub fn to_openai_compact(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": schema::compact_schema(&self.parameters),
            }
        })
    }
}

/// A tool call that ran: what the model reads and, when Stripe changed, what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSuccess {
    /// What the model reads.
    pub content: Value,
    /// Set when Stripe changed.
    pub effect: Option<Effect>,
}

impl ToolSuccess {
    /// A result: what the model reads and, when the call changed Stripe, the change.
    pub fn new(content: Value, effect: Option<Effect>) -> ToolSuccess {
        ToolSuccess { content, effect }
    }
}

/// The outcome of one tool call: a failure cannot say that Stripe changed (a write whose
/// outcome is unknown says so in [`ToolError::outcome_unknown`]).
pub type ToolOutput = Result<ToolSuccess, ToolError>;

/// What the model reads of an outcome: the result, or the failure's model view.
pub fn model_content(output: &ToolOutput) -> Value {
    output.content()
}

/// Views of a [`ToolOutput`] for callers that look at one side.
pub trait ToolOutputView {
    /// What the model reads: the result, or the failure's model view.
    fn content(&self) -> Value;
    /// The failure, if the call failed.
    fn error(&self) -> Option<&ToolError>;
    /// What Stripe changed, if the call ran and changed something.
    fn effect(&self) -> Option<&Effect>;
}

impl ToolOutputView for ToolOutput {
    fn content(&self) -> Value {
        match self {
            Ok(success) => success.content.clone(),
            Err(error) => error.to_model_json(),
        }
    }

    fn error(&self) -> Option<&ToolError> {
        self.as_ref().err()
    }

    fn effect(&self) -> Option<&Effect> {
        self.as_ref().ok().and_then(|s| s.effect.as_ref())
    }
}

/// What tools need to run.
#[derive(Debug, Clone)]
pub struct ToolEnv {
    /// The Altan Pay API client every Stripe tool calls through.
    pub pay: PayClient,
}

/// The boxed future of a tool's work, borrowing the tool and its inputs for `'a`.
pub type ToolFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tool behind dynamic dispatch, as the registry and the engine hold it.
pub trait Tool: Send + Sync {
    /// The name, description and argument schema sent to the model.
    fn definition(&self) -> &ToolDefinition;
    /// Runs one call: `arguments` is the model's JSON object as text, `ctx` the conversation's
    /// trusted scope. A failure says whether the model can fix it ([`ToolError::code`]).
    fn call<'a>(
        &'a self,
        env: &'a ToolEnv,
        ctx: &'a ToolContext,
        arguments: &'a str,
    ) -> ToolFuture<'a, ToolOutput>;
    /// Every fact the runtime uses about the tool (see [`declare`]).
    fn declaration(&self) -> &Declaration;
    /// Fetches the one object `id`: the check a read tool runs before another tool changes
    /// the object (verify first). Tools that cannot fetch by id say so.
    fn retrieve<'a>(
        &'a self,
        _env: &'a ToolEnv,
        _ctx: &'a ToolContext,
        id: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        let name = self.definition().name;
        Box::pin(std::future::ready(Err(ToolError::new(
            ErrorCode::Internal,
            format!("{name} cannot fetch `{id}` by its id"),
        ))))
    }
    /// What a call with these arguments destroys, if anything. A tool that cannot read the
    /// arguments here counts any effect it declares: in doubt, the call is held.
    fn destructive(&self, _arguments: &str) -> Option<DestructiveEffect> {
        self.declaration().destroys.first().map(|f| f.effect)
    }
    /// Whether a call may change Stripe: the agent records it in the session before sending
    /// it, so a crash before its result is known leaves a write to confirm, not a lost one.
    fn writes_to_stripe(&self) -> bool {
        self.declaration().writes_to_stripe()
    }
}

/// A tool that is one Altan Pay route: typed arguments in, Stripe's JSON out.
pub trait PayTool: Send + Sync + 'static {
    /// The name the model calls the tool by (`create_product`), unique in a [`ToolSet`].
    const NAME: &'static str;
    /// The arguments; their doc comments are the descriptions the model reads.
    type Args: DeserializeOwned + Serialize + JsonSchema + Send + Sync + 'static;
    /// What the tool does: every fact the runtime needs about it, declared here and nowhere
    /// else (see [`declare`]).
    const FACTS: Facts<Self::Args>;
    /// Parameters the model might try that Stripe will never take here, with the reason.
    const REFUSED: &'static [(&'static str, &'static str)] = &[];
    /// The route operation for these arguments, one of [`Facts::routes`]: the first unless
    /// the tool chooses (a read with an `id` retrieves one object).
    fn operation(_args: &Self::Args) -> &'static str {
        Self::FACTS.routes.first().copied().unwrap_or_default()
    }
    /// Checks beyond the types; may normalise values (e.g. currency case).
    fn check(_args: &mut Self::Args) -> Result<(), ToolError> {
        Ok(())
    }
}

/// Runs a [`PayTool`] and holds its definition, built once.
pub struct PayToolAdapter<T: PayTool> {
    definition: ToolDefinition,
    declaration: Declaration,
    _tool: std::marker::PhantomData<fn() -> T>,
}

impl<T: PayTool> Default for PayToolAdapter<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: PayTool> PayToolAdapter<T> {
    /// Builds the definition the model reads (the strict schema of `T::Args` with `account_id`)
    /// and the declaration, once.
    pub fn new() -> Self {
        let (mut parameters, description) = schema::strict_schema_for::<T::Args>();
        if T::FACTS.action != Action::Update {
            schema::drop_update_notes(&mut parameters);
        }
        add_account_id_property(&mut parameters);
        PayToolAdapter {
            definition: ToolDefinition {
                name: T::NAME,
                description,
                parameters,
            },
            declaration: T::FACTS.declaration(),
            _tool: std::marker::PhantomData,
        }
    }

    /// The typed arguments and the scope (account id, Connect id) of a call.
    fn parse(arguments: &str) -> Result<(T::Args, Scope), ToolError> {
        Self::parse_map(parse_arguments(T::NAME, arguments)?)
    }

    /// [`Self::parse`] of arguments already read as a JSON object.
    fn parse_map(mut raw: Map<String, Value>) -> Result<(T::Args, Scope), ToolError> {
        let scope = take_scope(&mut raw)?;
        for (param, why) in T::REFUSED {
            if raw.contains_key(*param) {
                return Err(ToolError::invalid(
                    Some(param),
                    format!("`{param}` cannot be used with {}: {why}", T::NAME),
                ));
            }
        }
        let args: T::Args = serde_json::from_value(Value::Object(raw)).map_err(|e| {
            ToolError::invalid(None, format!("invalid arguments for {}: {e}", T::NAME))
        })?;
        Ok((args, scope))
    }

    async fn run(&self, env: &ToolEnv, ctx: &ToolContext, arguments: &str) -> ToolOutput {
        let (args, scope) = Self::parse(arguments)?;
        self.run_parsed(env, ctx, args, scope).await
    }

    async fn run_parsed(
        &self,
        env: &ToolEnv,
        ctx: &ToolContext,
        mut args: T::Args,
        scope: Scope,
    ) -> ToolOutput {
        T::check(&mut args)?;
        if T::FACTS.action == Action::Update && !changes_anything(&args) {
            return Err(ToolError::invalid(
                None,
                format!(
                    "{} needs at least one field to change besides `id`",
                    T::NAME
                ),
            ));
        }
        let operation = T::operation(&args);
        if !T::FACTS.routes.contains(&operation) {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!(
                    "{} chose `{operation}`, a route it does not declare",
                    T::NAME
                ),
            ));
        }
        let route = env.pay.routes().get(operation).ok_or_else(|| {
            ToolError::new(ErrorCode::Internal, format!("no route for {operation}"))
        })?;
        let kind = route.kind;
        let addresses_one = route.uses("id");
        let account_id = resolve_account_id(ctx, scope.account_id)?;

        if operation == "account.stripe_connect_id" {
            let id = resolve_connect_id(env, ctx, &account_id, scope.stripe_connect_id).await?;
            return Ok(ToolSuccess::new(
                json!({"account_id": account_id, "stripe_connect_id": id}),
                None,
            ));
        }
        let connect_id = match route.uses("stripe_connect_id") {
            true => Some(resolve_connect_id(env, ctx, &account_id, scope.stripe_connect_id).await?),
            false => None,
        };

        let mut params = serde_json::to_value(&args).map_err(|e| {
            ToolError::new(
                ErrorCode::Internal,
                format!("cannot encode the arguments: {e}"),
            )
        })?;
        let id = match (addresses_one, params.as_object_mut()) {
            (true, Some(map)) => map
                .remove("id")
                .and_then(|v| v.as_str().map(str::to_string)),
            _ => None,
        };
        let key = kind
            .is_mutation()
            .then(|| idempotency_key(&ctx.conversation_id, &ctx.tool_call_id, operation));
        let result = env
            .pay
            .call(PayCall {
                operation,
                account_id: &account_id,
                stripe_connect_id: connect_id.as_deref(),
                id: id.as_deref(),
                params,
                idempotency_key: key,
            })
            .await
            .map_err(|e| ToolError::from_pay(&e, kind.is_mutation()))?;
        check_shape(operation, kind, &route.object, &result)?;

        let effect = kind.is_mutation().then(|| Effect {
            operation,
            kind,
            account_id: account_id.clone(),
            stripe_connect_id: connect_id.clone(),
            object: result.clone(),
        });
        // A read always answers with a list, also when it fetched one object by id.
        let content = if T::FACTS.action == Action::Read && addresses_one {
            json!({"object": "list", "data": [result], "has_more": false})
        } else {
            result
        };
        Ok(ToolSuccess::new(model_view(content), effect))
    }
}

impl<T: PayTool> Tool for PayToolAdapter<T> {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    fn destructive(&self, arguments: &str) -> Option<DestructiveEffect> {
        // Arguments that cannot be read never reach Stripe: the tool refuses them with the
        // same parse, so the model is told what to fix rather than made to wait for a person.
        Self::parse(arguments)
            .ok()
            .and_then(|(args, _)| T::FACTS.effect_of(&args))
    }

    fn retrieve<'a>(
        &'a self,
        env: &'a ToolEnv,
        ctx: &'a ToolContext,
        id: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        in_tool_span(T::NAME, ctx, async move {
            let by_id = Map::from_iter([("id".to_string(), Value::from(id))]);
            let (args, scope) = Self::parse_map(by_id)?;
            self.run_parsed(env, ctx, args, scope).await
        })
    }

    fn call<'a>(
        &'a self,
        env: &'a ToolEnv,
        ctx: &'a ToolContext,
        arguments: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        in_tool_span(T::NAME, ctx, self.run(env, ctx, arguments))
    }
}

/// Whether update arguments name anything to change besides the object's `id`: read from
/// their serialized form (unset fields are left out or null), so a field added to an update's
/// arguments counts without a list to keep up to date.
fn changes_anything(args: &impl Serialize) -> bool {
    match serde_json::to_value(args) {
        Ok(Value::Object(fields)) => fields.iter().any(|(k, v)| k != "id" && !v.is_null()),
        // Not an object: nothing to judge here; encoding the call reports it.
        _ => true,
    }
}

/// Runs a tool's call in its span and logs a failure: mistakes the model fixes itself are
/// routine; the rest need an operator.
pub(crate) fn in_tool_span<'a>(
    name: &'static str,
    ctx: &ToolContext,
    run: impl Future<Output = ToolOutput> + Send + 'a,
) -> ToolFuture<'a, ToolOutput> {
    let span = info_span!("tool", name, call_id = %ctx.tool_call_id);
    Box::pin(
        async move {
            let output = run.await;
            if let Err(error) = &output {
                match error.code.disposition().act {
                    Disposition::ModelRetry => {
                        tracing::info!(code = ?error.code, detail = %error.operator_detail, "tool call refused")
                    }
                    _ => {
                        tracing::warn!(code = ?error.code, detail = %error.operator_detail, "tool call failed")
                    }
                }
            }
            output
        }
        .instrument(span),
    )
}

/// What the model reads of a Stripe object: the object without its null, empty-list and
/// empty-map fields (a list's `data` stays, empty or not), `livemode`, a list's `url` and a
/// subscription item's `plan` (the legacy copy of its `price`). Stripe sends every field of an object, most of them unset; the model
/// learns nothing from them, and they are most of the tokens of every later call. The sync
/// plan is built from the whole object ([`Effect::object`]).
pub fn model_view(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_list = map.get("object") == Some(&json!("list"));
            let has_price = map.contains_key("price");
            Value::Object(
                map.into_iter()
                    .filter(|(k, _)| {
                        // Always false here; a list's API path; a subscription item's legacy
                        // copy of its price.
                        k != "livemode" && !(is_list && k == "url") && !(has_price && k == "plan")
                    })
                    .map(|(k, v)| (k, model_view(v)))
                    .filter(|(k, v)| k == "data" || !is_empty_value(v))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(model_view).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// A 2xx answer the sync plan can rely on: a mutation names the object it changed (a string
/// `id`, the route's `object`), a list has `data`. Anything else is a bad response whose
/// outcome is unknown, never a half-understood success.
fn check_shape(
    operation: &str,
    kind: RouteKind,
    object: &str,
    result: &Value,
) -> Result<(), ToolError> {
    let problem = if result.get("error").is_some() && result.get("id").is_none() {
        Some("a success status with an error body".to_string())
    } else if operation.ends_with(".list") && result.get("object") == Some(&json!("list")) {
        (!result.get("data").is_some_and(Value::is_array))
            .then(|| "a list without a `data` array".to_string())
    } else if kind.is_mutation() {
        match (
            result.get("id"),
            result.get("object").and_then(Value::as_str),
        ) {
            (Some(Value::String(id)), _) if id.trim().is_empty() => {
                Some("an empty `id`".to_string())
            }
            // Another known kind would be synced into the wrong table.
            (Some(Value::String(_)), Some(o))
                if o != object && crate::sync::ObjectKind::from_object_name(o).is_some() =>
            {
                Some(format!("a `{o}` where a `{object}` was expected"))
            }
            (Some(Value::String(_)), _) => None,
            _ => Some("no string `id`".to_string()),
        }
    } else {
        None
    };
    let Some(problem) = problem else {
        return Ok(());
    };
    let mutation = kind.is_mutation();
    let mut error = ToolError::new(
        ErrorCode::BadResponse,
        "The Altan Pay API gave an answer that could not be read.",
    )
    .with_operator_detail(format!(
        "{operation}: the Altan Pay API answered {problem}: {}",
        crate::pay::client::excerpt_value(result)
    ));
    if mutation {
        error.outcome_unknown = true;
        error.model_message = format!(
            "{} The change may or may not have been applied: list the objects to check before trying again, and tell the user if it is still unclear.",
            error.model_message
        );
    }
    Err(error)
}

/// The account id and Connect id the model may pass next to a tool's own arguments.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    pub(crate) account_id: Option<String>,
    pub(crate) stripe_connect_id: Option<String>,
}

const ACCOUNT_ID_DOC: &str = "The Altan account id (workspace id). Null to use the account of this conversation. Never guess it: if you don't know it, ask @Altan.";

pub(crate) fn add_account_id_property(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.insert("type".into(), json!("object"));
    let props = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(props) = props.as_object_mut() {
        props.insert(
            "account_id".into(),
            json!({"type": ["string", "null"], "description": ACCOUNT_ID_DOC}),
        );
    }
    let names: Vec<Value> = obj
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(|k| json!(k)).collect())
        .unwrap_or_default();
    obj.insert("required".into(), Value::Array(names));
    obj.insert("additionalProperties".into(), Value::Bool(false));
}

pub(crate) fn parse_arguments(
    tool: &str,
    arguments: &str,
) -> Result<Map<String, Value>, ToolError> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ToolError::invalid(
            None,
            format!(
                "the arguments of {tool} must be a JSON object, not {}",
                json_kind(&other)
            ),
        )),
        Err(e) => Err(ToolError::invalid(
            None,
            format!("the arguments of {tool} are not valid JSON ({e}); send one JSON object"),
        )),
    }
}

pub(crate) fn take_scope(raw: &mut Map<String, Value>) -> Result<Scope, ToolError> {
    let mut take = |name: &str| -> Result<Option<String>, ToolError> {
        match raw.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(ToolError::invalid(
                Some(name),
                format!(
                    "`{name}` must be a string or null, not {}",
                    json_kind(&other)
                ),
            )),
        }
    };
    Ok(Scope {
        account_id: take("account_id")?,
        stripe_connect_id: take("stripe_connect_id")?,
    })
}

/// The trusted context wins; an argument that names another account is refused, never
/// silently replaced, because it means the model is confused about whom it acts for.
pub(crate) fn resolve_account_id(
    ctx: &ToolContext,
    from_args: Option<String>,
) -> Result<String, ToolError> {
    match (&ctx.account_id, from_args) {
        (Some(trusted), Some(given)) if *trusted != given => Err(ToolError::new(
            ErrorCode::AccountMismatch,
            format!(
                "This conversation acts for account `{trusted}`, not `{given}`. Pass null as account_id."
            ),
        )),
        (Some(trusted), _) => Ok(trusted.clone()),
        (None, Some(given)) => Ok(given),
        (None, None) => Err(ToolError::new(
            ErrorCode::MissingAccountId,
            "No account id is known for this conversation. Ask @Altan for the account id (workspace id) and do not guess it.",
        )),
    }
}

/// The Connect id comes from the trusted context or the Altan Pay API, never from the model:
/// a value the model passes is only compared with it.
async fn resolve_connect_id(
    env: &ToolEnv,
    ctx: &ToolContext,
    account_id: &str,
    from_args: Option<String>,
) -> Result<String, ToolError> {
    let known = match &ctx.stripe_connect_id {
        Some(id) => id.clone(),
        None => env
            .pay
            .stripe_connect_id(account_id)
            .await
            .map_err(|e| ToolError::from_pay(&e, false))?,
    };
    match from_args {
        Some(given) if given != known => Err(ToolError::new(
            ErrorCode::AccountMismatch,
            format!(
                "The Stripe Connect id of account `{account_id}` is `{known}`, not `{given}`. Leave stripe_connect_id out."
            ),
        )),
        _ => Ok(known),
    }
}

/// A tool added under a name the tool set already has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("there is already a tool named `{name}`")]
pub struct DuplicateTool {
    /// The name the set already had.
    pub name: &'static str,
}

/// All tools, by name, in a fixed order.
#[derive(Clone)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
    by_name: HashMap<&'static str, usize>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| t.definition().name))
            .finish()
    }
}

impl ToolSet {
    /// A set of `tools` in this order. Names are not checked here: of two tools with one name,
    /// [`ToolSet::get`] finds the later ([`ToolSet::altan_pay_with`] refuses duplicates).
    pub fn new(tools: Vec<Arc<dyn Tool>>) -> ToolSet {
        let by_name = tools
            .iter()
            .enumerate()
            .map(|(i, t)| (t.definition().name, i))
            .collect();
        ToolSet { tools, by_name }
    }

    /// Every Altan Pay tool, with plans kept in memory.
    pub fn altan_pay() -> ToolSet {
        ToolSet::altan_pay_with_plans(plan::PlanStore::default())
    }

    /// Every Altan Pay tool, with plans kept in `plans`.
    pub fn altan_pay_with_plans(plans: plan::PlanStore) -> ToolSet {
        ToolSet::with_open_tools(ToolSet::catalog_and_plans(plans))
    }

    /// Every Altan Pay tool, with plans kept in `plans`, and `own` tools after them (opened
    /// or sent as their declarations say). Fails on a name the set already has.
    pub fn altan_pay_with(
        plans: plan::PlanStore,
        own: Vec<Arc<dyn Tool>>,
    ) -> Result<ToolSet, DuplicateTool> {
        let mut tools = ToolSet::catalog_and_plans(plans);
        for tool in own {
            let name = tool.definition().name;
            if name == open::OPEN_TOOLS || tools.iter().any(|t| t.definition().name == name) {
                return Err(DuplicateTool { name });
            }
            tools.push(tool);
        }
        Ok(ToolSet::with_open_tools(tools))
    }

    fn catalog_and_plans(plans: plan::PlanStore) -> Vec<Arc<dyn Tool>> {
        let mut tools = catalog::all();
        tools.push(Arc::new(plan::PlanTool::read(plans.clone())));
        tools.push(Arc::new(plan::PlanTool::update(plans)));
        tools
    }

    /// `tools` and, last, `open_tools`, which opens any of them.
    fn with_open_tools(mut tools: Vec<Arc<dyn Tool>>) -> ToolSet {
        let openable = tools.iter().map(|t| t.definition().name).collect();
        tools.push(Arc::new(open::OpenTools::new(openable)));
        ToolSet::new(tools)
    }

    /// The tool called `name`, if the set has one.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// Every tool, in the set's order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.iter()
    }

    /// How the tool called `name` is sent to the model (`None`: no such tool).
    pub fn exposure(&self, name: &str) -> Option<Exposure> {
        self.get(name).map(|t| t.declaration().exposure)
    }

    /// Whether the tool called `name` may change Stripe (unknown tools do not run at all).
    pub fn writes_to_stripe(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| t.writes_to_stripe())
    }

    /// Every tool's name, in the set's order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tools.iter().map(|t| t.definition().name)
    }

    /// Every tool's definition, in the set's order.
    pub fn definitions(&self) -> impl Iterator<Item = &ToolDefinition> {
        self.tools.iter().map(|t| t.definition())
    }

    /// Every tool in the strict form with the `account_id` property: the definitions of a
    /// conversation whose context has no account id, with every group open.
    pub fn to_openai_json(&self) -> Value {
        Value::Array(self.entries(Opened::all(), false, false))
    }

    /// The opt-in compact `tools` array (see [`ToolDefinition::to_openai_compact`]), every
    /// group open. With `account_known` the `account_id` property is left out of every tool.
    pub fn to_openai_json_compact(&self, account_known: bool) -> Value {
        Value::Array(self.entries(Opened::all(), account_known, true))
    }

    /// The strict `tools` array of a call: the starter tools while nothing is `opened`, else
    /// `open_tools` and the `opened` tools in the set's order. With `account_known` (the trusted context carries the account
    /// id) the `account_id` property is left out: the tools use the context's id when it is
    /// absent, so the model has nothing to fill in and nothing to invent.
    pub fn to_openai_json_for(&self, opened: Opened, account_known: bool) -> Value {
        Value::Array(self.entries(opened, account_known, false))
    }

    /// The positions of the tools named (unknown names are left out).
    pub fn opened(&self, names: &[String]) -> Opened {
        names
            .iter()
            .filter_map(|n| self.by_name.get(n.as_str()))
            .fold(Opened::default(), |o, &i| o.with(i))
    }

    /// The tools an `open_tools` call's arguments ask for (none when they are invalid: the
    /// call itself told the model why).
    pub fn opened_by(&self, arguments: &str) -> Vec<String> {
        let openable: Vec<&str> = self
            .tools
            .iter()
            .filter(|t| t.declaration().exposure != Exposure::Always)
            .map(|t| t.definition().name)
            .collect();
        open::opened_by(arguments, &openable).unwrap_or_default()
    }

    /// The `tools` entries of a call, strict or compact: the tools sent always (`open_tools`)
    /// first, then, while nothing is `opened`, the starter tools; else the `opened` tools; both
    /// in the set's order (see [`Exposure`]).
    pub fn entries(&self, opened: Opened, account_known: bool, compact: bool) -> Vec<Value> {
        let exposed = |t: &Arc<dyn Tool>| t.declaration().exposure;
        let first = self.tools.iter().filter(|t| exposed(t) == Exposure::Always);
        let rest = self
            .tools
            .iter()
            .enumerate()
            .filter(|(i, t)| match exposed(t) {
                Exposure::Always => false,
                _ if !opened.is_empty() => opened.contains(*i),
                Exposure::Starter => true,
                Exposure::Opened => false,
            })
            .map(|(_, t)| t);
        first
            .chain(rest)
            .map(|t| {
                let d = t.definition();
                let mut entry = if compact {
                    d.to_openai_compact()
                } else {
                    d.to_openai()
                };
                if account_known
                    && let Some(params) = entry
                        .get_mut("function")
                        .and_then(|f| f.get_mut("parameters"))
                {
                    schema::remove_property(params, "account_id");
                }
                if t.declaration().exposure == Exposure::Always
                    && !opened.is_empty()
                    && opened != Opened::all()
                {
                    // What is open already need not be offered again.
                    self.drop_opened_names(&mut entry, &opened);
                }
                entry
            })
            .collect()
    }

    /// Leaves the `opened` tools out of `open_tools`'s list of names.
    fn drop_opened_names(&self, entry: &mut Value, opened: &Opened) {
        let names = entry
            .pointer_mut("/function/parameters/properties/tools/items/enum")
            .and_then(Value::as_array_mut);
        if let Some(names) = names {
            names.retain(|n| {
                n.as_str()
                    .and_then(|n| self.by_name.get(n))
                    .is_none_or(|&i| !opened.contains(i))
            });
        }
    }

    /// `altan-pay tools --json` and tools/schemas.json: every tool, as sent when the trusted
    /// context carries the account id (the platform's case), pretty-printed.
    pub fn to_json_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.to_openai_json_for(Opened::all(), true))
            .unwrap_or_default();
        text.push('\n');
        text
    }

    /// Fetches the object `id` with the read tool called `name` (verify first).
    pub async fn retrieve(
        &self,
        env: &ToolEnv,
        ctx: &ToolContext,
        name: &str,
        id: &str,
    ) -> ToolOutput {
        match self.get(name) {
            Some(tool) => tool.retrieve(env, ctx, id).await,
            None => Err(ToolError::new(
                ErrorCode::Internal,
                format!("no tool `{name}` to verify `{id}` with"),
            )),
        }
    }

    /// Runs a call by tool name; an unknown name is an error the model can act on.
    pub async fn call(
        &self,
        env: &ToolEnv,
        ctx: &ToolContext,
        name: &str,
        arguments: &str,
    ) -> ToolOutput {
        match self.get(name) {
            Some(tool) => tool.call(env, ctx, arguments).await,
            None => Err(ToolError::new(
                ErrorCode::UnknownTool,
                format!(
                    "There is no tool named `{name}`. Available tools: {}.",
                    self.names().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An update's arguments with a field no list anywhere names.
    #[derive(Serialize)]
    struct UpdateThing {
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        colour: Option<String>,
        shade: Option<u8>,
    }

    #[test]
    fn a_new_update_field_counts_as_a_change_without_being_listed() {
        let thing = |colour: Option<&str>, shade| UpdateThing {
            id: "thing_1".into(),
            colour: colour.map(str::to_string),
            shade,
        };
        assert!(changes_anything(&thing(Some("red"), None)));
        assert!(
            changes_anything(&thing(None, Some(3))),
            "a null-serialised field set"
        );
        assert!(!changes_anything(&thing(None, None)), "only the id");
    }

    #[test]
    fn the_model_view_leaves_out_what_says_nothing() {
        let item = json!({"id": "si_1", "price": {"id": "price_1", "nickname": null}, "plan": {"id": "price_1"}});
        let sub = json!({
            "id": "sub_1", "livemode": false, "cancel_at": null, "metadata": {}, "discounts": [],
            "cancel_at_period_end": false, "quantity": 0,
            "items": {"object": "list", "url": "/v1/subscription_items", "data": [item], "has_more": false},
        });
        assert_eq!(
            model_view(sub),
            json!({
                "id": "sub_1", "cancel_at_period_end": false, "quantity": 0,
                "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_1"}}], "has_more": false},
            })
        );
        let empty = json!({"object": "list", "data": [], "has_more": false});
        assert_eq!(
            model_view(empty.clone()),
            empty,
            "an empty list still says it is empty"
        );
        // `plan` and `url` are only dropped where they repeat something.
        let plan = json!({"object": "plan_holder", "plan": "x", "url": "https://x"});
        assert_eq!(model_view(plan.clone()), plan);
    }
}
