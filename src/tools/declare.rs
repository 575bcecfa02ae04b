//! What a tool does, declared once, on the tool: read or write, the effect kind, the object it
//! targets and the read that verifies it, the table it syncs to, when it is sent to the model,
//! and which argument values make a call destructive. The policy, the write-ahead, tool
//! exposure and the README's tables read these facts; nothing keeps its own list of tool names.
//! [`problems`] walks a tool set and names every fact that is missing or contradicts another
//! (the route table, the schema).

use std::fmt;

use serde_json::Value;

use crate::pay::{RouteKind, RouteTable};
use crate::sync::ObjectKind;

/// What a call does to what it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Changes nothing.
    Read,
    /// Makes a new object (`create_*`).
    Create,
    /// Changes fields of an existing object (`update_*`).
    Update,
    /// Removes an existing object (`delete_*`).
    Delete,
    /// Ends an existing subscription (`cancel_subscription`); its route is an update.
    Cancel,
}

impl Action {
    /// Whether a call changes what it touches.
    pub fn writes(self) -> bool {
        !matches!(self, Action::Read)
    }

    /// Whether a call acts on an object that must exist already.
    pub fn acts_on_existing(self) -> bool {
        matches!(self, Action::Update | Action::Delete | Action::Cancel)
    }

    /// The route kind that carries it (Stripe cancels a subscription with an update).
    pub fn route_kind(self) -> RouteKind {
        match self {
            Action::Read => RouteKind::Read,
            Action::Create => RouteKind::Create,
            Action::Update | Action::Cancel => RouteKind::Update,
            Action::Delete => RouteKind::Delete,
        }
    }
}

/// Where a tool's effects land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Stripe, through the Altan Pay API: writes are recorded before they are sent.
    Stripe,
    /// The room's plan (`read_plan`, `update_plan`).
    RoomPlan,
    /// The session's own tool list (`open_tools`).
    Session,
}

/// When a tool's definition is sent to the model (see [`super::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// In every call, first: the tool that opens the others.
    Always,
    /// In a thread's calls until it opens tools (and after, once the thread used it).
    Starter,
    /// Once the model opens it.
    Opened,
}

/// What a destructive call destroys. A person asks for one of these, in these words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestructiveEffect {
    /// Removes the object (delete, remove).
    Delete,
    /// Ends a subscription, now or at a date (cancel, unsubscribe).
    Cancel,
    /// Archives or turns off the object (archive, deactivate).
    Deactivate,
}

impl DestructiveEffect {
    /// The word a person uses for it: `delete`, `cancel` or `deactivate`.
    pub fn as_str(self) -> &'static str {
        match self {
            DestructiveEffect::Delete => "delete",
            DestructiveEffect::Cancel => "cancel",
            DestructiveEffect::Deactivate => "deactivate",
        }
    }
}

impl fmt::Display for DestructiveEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An existing object a call acts on: the argument naming it and the read tool that fetches it
/// by id, so the policy can confirm it exists before the call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The argument holding the object's id (`id`, or `customer` for a new subscription).
    pub param: &'static str,
    /// The kind of object the argument names.
    pub object: ObjectKind,
    /// The read tool that fetches it with `{"id": ...}`.
    pub read: &'static str,
}

/// An argument whose value makes a call of a tool with typed arguments `A` destructive.
pub struct ArgDestroys<A: 'static> {
    /// The argument's name in the schema (checked by [`problems`]).
    pub param: &'static str,
    /// What a call with such a value destroys.
    pub effect: DestructiveEffect,
    /// Picks out the destructive values; typed, so renaming the field is a compile error.
    pub test: fn(&A) -> bool,
}

/// The declaration of a tool with typed arguments `A`, as a constant on the tool
/// ([`super::PayTool::FACTS`]); built with [`Facts::read`], [`Facts::create`],
/// [`Facts::update`], [`Facts::delete`] or [`Facts::cancel`].
pub struct Facts<A: 'static> {
    /// What a call does: read, create, update, delete or cancel.
    pub action: Action,
    /// The routes the tool calls; the first is the one of a write.
    pub routes: &'static [&'static str],
    /// The existing object a call acts on, checked to exist before the call runs; `None` when
    /// the call names none.
    pub target: Option<Target>,
    /// The kind whose table the tool's changes are written to; `None` when nothing it changes
    /// is mirrored.
    pub syncs: Option<ObjectKind>,
    /// When the definition is sent to the model; [`Exposure::Opened`] unless [`Facts::starter`].
    pub exposure: Exposure,
    /// What every call destroys (a delete, a cancel).
    pub destroys: Option<DestructiveEffect>,
    /// What calls with certain argument values destroy (`active: false`, ...).
    pub destroys_when: &'static [ArgDestroys<A>],
}

impl<A> Facts<A> {
    const fn new(action: Action, routes: &'static [&'static str]) -> Facts<A> {
        Facts {
            action,
            routes,
            target: None,
            syncs: None,
            exposure: Exposure::Opened,
            destroys: None,
            destroys_when: &[],
        }
    }

    /// Reads through these routes.
    pub const fn read(routes: &'static [&'static str]) -> Facts<A> {
        Facts::new(Action::Read, routes)
    }

    /// Creates an object through `route`; `syncs`: its kind, when the database mirrors it.
    pub const fn create(route: &'static [&'static str], syncs: Option<ObjectKind>) -> Facts<A> {
        Facts {
            syncs,
            ..Facts::new(Action::Create, route)
        }
    }

    /// Changes the existing `object` named by `id`, which `read` fetches.
    pub const fn update(
        route: &'static [&'static str],
        object: ObjectKind,
        read: &'static str,
    ) -> Facts<A> {
        Facts::existing(Action::Update, route, object, read)
    }

    /// Deletes the existing `object` named by `id`: always destructive.
    pub const fn delete(
        route: &'static [&'static str],
        object: ObjectKind,
        read: &'static str,
    ) -> Facts<A> {
        Facts {
            destroys: Some(DestructiveEffect::Delete),
            ..Facts::existing(Action::Delete, route, object, read)
        }
    }

    /// Cancels the existing `object` named by `id`: always destructive.
    pub const fn cancel(
        route: &'static [&'static str],
        object: ObjectKind,
        read: &'static str,
    ) -> Facts<A> {
        Facts {
            destroys: Some(DestructiveEffect::Cancel),
            ..Facts::existing(Action::Cancel, route, object, read)
        }
    }

    const fn existing(
        action: Action,
        route: &'static [&'static str],
        object: ObjectKind,
        read: &'static str,
    ) -> Facts<A> {
        Facts {
            target: Some(Target {
                param: "id",
                object,
                read,
            }),
            syncs: Some(object),
            ..Facts::new(action, route)
        }
    }

    /// Sent before the thread opens any tool.
    pub const fn starter(self) -> Facts<A> {
        Facts {
            exposure: Exposure::Starter,
            ..self
        }
    }

    /// The object `param` names must exist (verified with `read`) before the call runs.
    pub const fn verifies(
        self,
        param: &'static str,
        object: ObjectKind,
        read: &'static str,
    ) -> Facts<A> {
        Facts {
            target: Some(Target {
                param,
                object,
                read,
            }),
            ..self
        }
    }

    /// These argument values make a call destructive.
    pub const fn destroys_when(self, rules: &'static [ArgDestroys<A>]) -> Facts<A> {
        Facts {
            destroys_when: rules,
            ..self
        }
    }

    /// The effect of a call with these arguments, if it destroys something.
    pub fn effect_of(&self, args: &A) -> Option<DestructiveEffect> {
        self.destroys.or_else(|| {
            self.destroys_when
                .iter()
                .find(|r| (r.test)(args))
                .map(|r| r.effect)
        })
    }

    /// The untyped declaration behind `dyn Tool`.
    pub fn declaration(&self) -> Declaration {
        let always = self.destroys.map(|effect| DestroysFact {
            effect,
            param: None,
        });
        let when = self.destroys_when.iter().map(|r| DestroysFact {
            effect: r.effect,
            param: Some(r.param),
        });
        Declaration {
            action: self.action,
            reach: Reach::Stripe,
            routes: self.routes,
            target: self.target,
            syncs: self.syncs,
            exposure: self.exposure,
            destroys: always.into_iter().chain(when).collect(),
        }
    }
}

/// A destructive effect as the catalog walk sees it: always, or through one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestroysFact {
    /// What is destroyed.
    pub effect: DestructiveEffect,
    /// The argument whose value makes a call destructive; `None`: every call is.
    pub param: Option<&'static str>,
}

/// Every fact the runtime uses about one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// What a call does: read, create, update, delete or cancel.
    pub action: Action,
    /// Where its effects land: Stripe, the room's plan or the session.
    pub reach: Reach,
    /// The Altan Pay routes the tool calls (none outside Stripe).
    pub routes: &'static [&'static str],
    /// The object that must exist before the call runs.
    pub target: Option<Target>,
    /// The kind whose table the tool's changes are written to; `None` when nothing it changes
    /// is mirrored (reads, checkout sessions).
    pub syncs: Option<ObjectKind>,
    /// When the definition is sent to the model.
    pub exposure: Exposure,
    /// Every way a call can be destructive; empty when none is.
    pub destroys: Vec<DestroysFact>,
}

impl Declaration {
    /// A tool outside Stripe (the plan tools, `open_tools`).
    pub fn local(action: Action, reach: Reach, exposure: Exposure) -> Declaration {
        Declaration {
            action,
            reach,
            routes: &[],
            target: None,
            syncs: None,
            exposure,
            destroys: Vec::new(),
        }
    }

    /// Whether a call may change Stripe (it is recorded before it is sent).
    pub fn writes_to_stripe(&self) -> bool {
        self.reach == Reach::Stripe && self.action.writes()
    }

    /// Whether a top-level `id` argument names an object this call makes (a custom coupon
    /// id) rather than one it references.
    pub fn names_new_object(&self) -> bool {
        self.action == Action::Create
    }
}

/// A fact one tool lacks or contradicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarationProblem {
    /// The tool's name, or `*` for a problem of the whole set.
    pub tool: &'static str,
    /// What is missing or contradicts, in words.
    pub problem: String,
}

impl fmt::Display for DeclarationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.tool, self.problem)
    }
}

/// Arguments of an update that destroy or deactivate something whatever the object; an update
/// tool taking one of them must declare it.
pub const DESTRUCTIVE_ARGUMENTS: &[&str] = &["active", "cancel_at_period_end", "cancel_at"];

/// Every fact of every tool in `tools` that is missing or contradicts the route table, the
/// schema or another tool. Empty when the catalog is consistent.
pub fn problems(tools: &super::ToolSet, routes: &RouteTable) -> Vec<DeclarationProblem> {
    let mut out = Vec::new();
    let always = tools
        .iter()
        .filter(|t| t.declaration().exposure == Exposure::Always)
        .count();
    if always != 1 {
        out.push(DeclarationProblem {
            tool: "*",
            problem: format!("{always} tools are sent always; exactly one (the opener) must be"),
        });
    }
    for tool in tools.iter() {
        let name = tool.definition().name;
        let mut bad = |problem: String| {
            out.push(DeclarationProblem {
                tool: name,
                problem,
            })
        };
        let d = tool.declaration();
        let schema = &tool.definition().parameters;
        check_routes(d, routes, &mut bad);
        check_target(d, tools, schema, &mut bad);
        check_destroys(d, schema, &mut bad);
    }
    out
}

fn has_param(schema: &Value, param: &str) -> bool {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key(param))
}

fn check_routes(d: &Declaration, routes: &RouteTable, bad: &mut impl FnMut(String)) {
    if d.reach != Reach::Stripe {
        if !d.routes.is_empty() || d.syncs.is_some() || d.target.is_some() {
            bad("a tool outside Stripe declares routes, a synced table or a target".into());
        }
        return;
    }
    if d.routes.is_empty() {
        bad("a Stripe tool declares no route".into());
    }
    for op in d.routes {
        let Some(route) = routes.get(op) else {
            bad(format!("route `{op}` is not in the route table"));
            continue;
        };
        if route.kind != d.action.route_kind() {
            bad(format!(
                "declared {:?}, but route `{op}` is a {:?}",
                d.action, route.kind
            ));
        }
        let mirrored = ObjectKind::from_object_name(&route.object);
        if d.action.writes() && d.syncs != mirrored {
            bad(match mirrored {
                Some(kind) => format!(
                    "changes a {kind} (route `{op}`) but declares table {:?}",
                    d.syncs
                ),
                None => format!(
                    "declares table {:?} for `{}`, which is not mirrored",
                    d.syncs, route.object
                ),
            });
        }
    }
    if !d.action.writes() && d.syncs.is_some() {
        bad("a read declares a synced table".into());
    }
}

fn check_target(
    d: &Declaration,
    tools: &super::ToolSet,
    schema: &Value,
    bad: &mut impl FnMut(String),
) {
    let Some(target) = d.target else {
        if d.reach == Reach::Stripe && d.action.acts_on_existing() {
            bad(format!(
                "a {:?} of an existing object declares no verifying read",
                d.action
            ));
        }
        return;
    };
    if !has_param(schema, target.param) {
        bad(format!(
            "its target argument `{}` is not in its schema",
            target.param
        ));
    }
    if d.action.acts_on_existing() && target.param != "id" {
        bad(format!(
            "a {:?} targets `{}`, not the object's `id`",
            d.action, target.param
        ));
    }
    if d.action.acts_on_existing() && d.syncs.is_some_and(|k| k != target.object) {
        bad(format!(
            "targets a {} but syncs {:?}",
            target.object, d.syncs
        ));
    }
    match tools.get(target.read) {
        None => bad(format!(
            "its verifying read `{}` is not a tool",
            target.read
        )),
        Some(read) => {
            let r = read.declaration();
            let fetches = r.action == Action::Read
                && r.reach == Reach::Stripe
                && has_param(&read.definition().parameters, "id")
                && r.routes
                    .iter()
                    .any(|op| ObjectKind::from_operation(op) == Some(target.object));
            if !fetches {
                bad(format!(
                    "its verifying read `{}` does not fetch a {} by id",
                    target.read, target.object
                ));
            }
        }
    }
}

fn check_destroys(d: &Declaration, schema: &Value, bad: &mut impl FnMut(String)) {
    let always = |effect| {
        d.destroys
            .iter()
            .any(|f| f.effect == effect && f.param.is_none())
    };
    match d.action {
        Action::Delete if !always(DestructiveEffect::Delete) => {
            bad("a delete does not declare that it always deletes".into())
        }
        Action::Cancel if !always(DestructiveEffect::Cancel) => {
            bad("a cancel does not declare that it always cancels".into())
        }
        Action::Read | Action::Create if !d.destroys.is_empty() => {
            bad(format!("a {:?} declares a destructive effect", d.action))
        }
        _ => {}
    }
    for fact in &d.destroys {
        if let Some(param) = fact.param
            && !has_param(schema, param)
        {
            bad(format!(
                "its destructive argument `{param}` is not in its schema"
            ));
        }
    }
    if d.action == Action::Update {
        for param in DESTRUCTIVE_ARGUMENTS {
            if has_param(schema, param) && !d.destroys.iter().any(|f| f.param == Some(param)) {
                bad(format!(
                    "takes `{param}` but does not declare which of its values destroy"
                ));
            }
        }
    }
}
