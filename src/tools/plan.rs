//! The room's plan: `read_plan` and `update_plan` on one `plan.md` per workspace, kept in a
//! directory on disk (or in memory for the library's default and tests).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ErrorCode, ToolError};
use super::{
    Action, Declaration, Exposure, Reach, Tool, ToolContext, ToolDefinition, ToolEnv, ToolFuture,
    ToolOutput, ToolSuccess,
};

/// Largest plan accepted: a plan is a checklist, not a document store.
pub const MAX_PLAN_BYTES: usize = 64 * 1024;

/// A store of plans kept elsewhere (the server's database: `store::ServeStore`), one text per
/// account. Both calls are atomic: a reader sees the old plan or the new one.
pub trait PlanBackend: Send + Sync + std::fmt::Debug {
    /// The plan of `account_id`, `None` when it has none; `Err` says why it could not be read.
    fn read_plan<'a>(
        &'a self,
        account_id: &'a str,
    ) -> ToolFuture<'a, Result<Option<String>, String>>;
    /// Replaces the plan of `account_id` with `text`; `Err` says why it could not be written.
    fn write_plan<'a>(
        &'a self,
        account_id: &'a str,
        text: &'a str,
    ) -> ToolFuture<'a, Result<(), String>>;
}

/// Where plans live.
#[derive(Debug, Clone)]
pub enum PlanStore {
    /// `<dir>/<account_id>/plan.md`.
    Directory(PathBuf),
    /// In this process only, by account id: the library's default and the tests'.
    Memory(Arc<Mutex<HashMap<String, String>>>),
    /// A database shared by every replica of the server.
    Shared(Arc<dyn PlanBackend>),
}

impl Default for PlanStore {
    fn default() -> Self {
        PlanStore::Memory(Arc::default())
    }
}

impl PlanStore {
    /// Plans on disk under `dir`, one `<account_id>/plan.md` per workspace.
    pub fn directory(dir: impl Into<PathBuf>) -> PlanStore {
        PlanStore::Directory(dir.into())
    }

    /// The plan of a workspace, `None` when it has none.
    pub async fn read(&self, account_id: &str) -> Result<Option<String>, String> {
        match self {
            PlanStore::Memory(map) => Ok(map
                .lock()
                .map_err(|_| "plan store lock poisoned")?
                .get(account_id)
                .cloned()),
            PlanStore::Shared(backend) => backend.read_plan(account_id).await,
            PlanStore::Directory(dir) => {
                let path = plan_path(dir, account_id)?;
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(format!("cannot read {}: {e}", path.display())),
                }
            }
        }
    }

    /// Replaces the plan; on disk through a temporary file and a rename, so a crash leaves
    /// either the old plan or the new one, never half of one.
    pub async fn write(&self, account_id: &str, text: &str) -> Result<(), String> {
        match self {
            PlanStore::Memory(map) => {
                map.lock()
                    .map_err(|_| "plan store lock poisoned")?
                    .insert(account_id.to_string(), text.to_string());
                Ok(())
            }
            PlanStore::Shared(backend) => backend.write_plan(account_id, text).await,
            PlanStore::Directory(dir) => {
                let path = plan_path(dir, account_id)?;
                let parent = path.parent().unwrap_or(dir);
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                let tmp = parent.join(format!(".plan.md.{}", uuid::Uuid::new_v4().simple()));
                std::fs::write(&tmp, text)
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, &path).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    format!("cannot replace {}: {e}", path.display())
                })
            }
        }
    }
}

/// The account id becomes a directory name, so only a safe alphabet is accepted.
fn plan_path(dir: &Path, account_id: &str) -> Result<PathBuf, String> {
    let safe = !account_id.is_empty()
        && account_id.len() <= 128
        && account_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !safe {
        return Err(format!(
            "account id `{account_id}` cannot name a plan directory"
        ));
    }
    Ok(dir.join(account_id).join("plan.md"))
}

/// Read the room's plan for this workspace (the steps agents agreed on, with their state).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadPlanArgs {}

/// Replace the room's plan for this workspace, e.g. to tick off a step you finished. Send
/// the whole plan text; change only your own section's steps.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdatePlanArgs {
    /// The full new plan, Markdown.
    pub(crate) content: String,
}

/// `read_plan` or `update_plan`.
pub(crate) struct PlanTool {
    definition: ToolDefinition,
    declaration: Declaration,
    store: PlanStore,
    write: bool,
}

impl PlanTool {
    pub(crate) fn read(store: PlanStore) -> PlanTool {
        PlanTool::new::<ReadPlanArgs>("read_plan", store, false)
    }

    pub(crate) fn update(store: PlanStore) -> PlanTool {
        PlanTool::new::<UpdatePlanArgs>("update_plan", store, true)
    }

    fn new<A: JsonSchema>(name: &'static str, store: PlanStore, write: bool) -> PlanTool {
        let (mut parameters, description) = super::schema::strict_schema_for::<A>();
        super::add_account_id_property(&mut parameters);
        PlanTool {
            definition: ToolDefinition {
                name,
                description,
                parameters,
            },
            declaration: Declaration::local(
                if write { Action::Update } else { Action::Read },
                Reach::RoomPlan,
                Exposure::Opened,
            ),
            store,
            write,
        }
    }

    async fn run(&self, ctx: &ToolContext, arguments: &str) -> Result<Value, ToolError> {
        let mut raw = super::parse_arguments(self.definition.name, arguments)?;
        let scope = super::take_scope(&mut raw)?;
        let account_id = super::resolve_account_id(ctx, scope.account_id)?;
        let failed = |e: String| {
            ToolError::new(ErrorCode::Internal, "the plan could not be stored")
                .with_operator_detail(e)
        };
        if !self.write {
            let _: ReadPlanArgs = serde_json::from_value(Value::Object(raw)).map_err(|e| {
                ToolError::invalid(None, format!("invalid arguments for read_plan: {e}"))
            })?;
            let plan = self.store.read(&account_id).await.map_err(failed)?;
            return Ok(json!({ "plan": plan }));
        }
        let args: UpdatePlanArgs = serde_json::from_value(Value::Object(raw)).map_err(|e| {
            ToolError::invalid(None, format!("invalid arguments for update_plan: {e}"))
        })?;
        if args.content.len() > MAX_PLAN_BYTES {
            return Err(ToolError::invalid(
                Some("content"),
                format!(
                    "the plan is {} bytes; at most {MAX_PLAN_BYTES} are kept",
                    args.content.len()
                ),
            ));
        }
        self.store
            .write(&account_id, &args.content)
            .await
            .map_err(failed)?;
        Ok(json!({ "updated": true, "bytes": args.content.len() }))
    }
}

impl Tool for PlanTool {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    fn call<'a>(
        &'a self,
        _env: &'a ToolEnv,
        ctx: &'a ToolContext,
        arguments: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        Box::pin(async move {
            self.run(ctx, arguments)
                .await
                .map(|content| ToolSuccess::new(content, None))
        })
    }
}
