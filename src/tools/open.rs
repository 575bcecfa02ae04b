//! Tools sent on demand: a thread starts with `open_tools` and the tools declared
//! [`Exposure::Starter`] (`create_product`, `create_price`), what a request that names no
//! resource is sent. Before a request's first model call the runtime opens the
//! tools the request's words need (`agent::ToolExposure::select`: which Stripe resources it
//! names and what it wants done with them, read from the tools' declarations), and the model
//! opens more by name with `open_tools`, so a call carries the definitions of what the
//! conversation uses, not of all 27 tools, and a request does not spend a model call opening
//! them. Once a thread has opened tools, its calls carry `open_tools` and the opened tools only:
//! the two creating tools stay when they are chosen (or the thread has already used them), and
//! are not sent to a conversation about coupons. The opened tools are session state: once
//! opened, a tool stays for the thread.
//!
//! Caching: `open_tools` comes first in every call and the starter set never changes, so the
//! tools and the system prompt of a thread's first call are the prefix every conversation of
//! a configuration shares; opened tools follow in the tool set's fixed order (not the order
//! they were opened), so threads that opened the same tools (the same words choose the same
//! tools) share the longer prefix too. Within a thread the tools change only when a request
//! needs one more, so each call repeats the previous one's prompt and tools.

use serde_json::{Value, json};

use super::error::ToolError;
use super::{
    Action, Declaration, Exposure, Reach, Tool, ToolContext, ToolDefinition, ToolEnv, ToolFuture,
    ToolOutput, ToolSuccess,
};

/// The name of the tool that opens tools.
pub const OPEN_TOOLS: &str = "open_tools";

/// Which tools a session has opened, as a set of positions in the tool set (any number of
/// tools: a set with a user's own tools may be longer than one machine word).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Opened {
    /// Every tool, whatever its position.
    every: bool,
    /// One bit per position, 64 to a word; no trailing zero words, so equal sets compare equal.
    words: Vec<u64>,
}

impl Opened {
    /// Every tool.
    pub fn all() -> Opened {
        Opened {
            every: true,
            words: Vec::new(),
        }
    }

    /// Whether nothing is opened (the thread still has the starter tools).
    pub fn is_empty(&self) -> bool {
        !self.every && self.words.is_empty()
    }

    /// Whether the tool at this position of the tool set is opened.
    pub fn contains(&self, position: usize) -> bool {
        self.every
            || self
                .words
                .get(position / 64)
                .is_some_and(|w| w & (1 << (position % 64)) != 0)
    }

    /// The set with the tool at this position opened too.
    pub fn with(mut self, position: usize) -> Opened {
        if !self.every {
            let word = position / 64;
            if self.words.len() <= word {
                self.words.resize(word + 1, 0);
            }
            self.words[word] |= 1 << (position % 64);
        }
        self
    }
}

/// `open_tools`: checks the names and says what it opened. The agent reads a successful
/// call's arguments (see [`opened_by`]) and sends those tools from the next call on.
pub struct OpenTools {
    definition: ToolDefinition,
    declaration: Declaration,
    openable: Vec<&'static str>,
}

impl OpenTools {
    /// `openable`: every tool name but `open_tools`, in the tool set's order.
    pub fn new(openable: Vec<&'static str>) -> OpenTools {
        // Written by hand: the enum is the tool set's names, known only at run time.
        let parameters = json!({
            "type": "object",
            "properties": {"tools": {"type": "array", "items": {"type": "string", "enum": openable}}},
            "required": ["tools"],
            "additionalProperties": false,
        });
        OpenTools {
            definition: ToolDefinition {
                name: OPEN_TOOLS,
                description: "Opens tools from the next step on; name all the request needs."
                    .into(),
                parameters,
            },
            // Sent first in every call; it reaches the rest. Which tools a thread starts with
            // is each tool's own declaration (`Exposure::Starter`).
            declaration: Declaration::local(Action::Read, Reach::Session, Exposure::Always),
            openable,
        }
    }

    /// The tools a call asks for, or the error the model reads.
    pub fn opened_by(&self, arguments: &str) -> Result<Vec<String>, ToolError> {
        opened_by(arguments, &self.openable)
    }
}

/// The tool names in `open_tools` arguments, each checked against `openable`.
pub fn opened_by(arguments: &str, openable: &[&str]) -> Result<Vec<String>, ToolError> {
    let raw = super::parse_arguments(OPEN_TOOLS, arguments)?;
    let Some(Value::Array(names)) = raw.get("tools") else {
        return Err(ToolError::invalid(
            Some("tools"),
            "`tools` must be a list of tool names",
        ));
    };
    let mut out = Vec::new();
    for name in names {
        match name.as_str() {
            Some(n) if openable.contains(&n) => out.push(n.to_string()),
            Some(OPEN_TOOLS) => {}
            other => {
                return Err(ToolError::invalid(
                    Some("tools"),
                    format!(
                        "`{}` is not a tool that can be opened; choose from: {}",
                        other.map_or_else(|| name.to_string(), str::to_string),
                        openable.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(out)
}

impl Tool for OpenTools {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    fn declaration(&self) -> &Declaration {
        &self.declaration
    }

    fn call<'a>(
        &'a self,
        _env: &'a ToolEnv,
        _ctx: &'a ToolContext,
        arguments: &'a str,
    ) -> ToolFuture<'a, ToolOutput> {
        Box::pin(async move {
            let names = self.opened_by(arguments)?;
            Ok(ToolSuccess::new(json!({"opened": names}), None))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_positions_are_a_set() {
        let o = Opened::default().with(3).with(10).with(3);
        assert!(o.contains(3) && o.contains(10) && !o.contains(4));
        assert!(Opened::all().contains(63) && Opened::all().contains(640));
        assert_eq!(o, Opened::default().with(10).with(3));
    }

    #[test]
    fn a_tool_past_the_sixty_fourth_position_stays_open() {
        let o = Opened::default().with(70).with(64).with(200);
        assert!(o.contains(70) && o.contains(64) && o.contains(200), "{o:?}");
        assert!(!o.contains(6) && !o.contains(0) && !o.contains(71));
        assert!(!o.is_empty());
        assert_ne!(o, Opened::default());
    }

    #[test]
    fn open_tools_names_what_cannot_be_opened() {
        let tool = OpenTools::new(vec!["create_price", "get_customers", "create_subscription"]);
        assert_eq!(
            tool.opened_by(r#"{"tools":["get_customers","create_price","open_tools"]}"#)
                .unwrap(),
            vec!["get_customers", "create_price"],
            "a starter tool is opened like any other; open_tools is always there"
        );
        let e = tool
            .opened_by(r#"{"tools":["create_invoice"]}"#)
            .unwrap_err();
        assert!(
            e.model_message.contains("create_invoice") && e.model_message.contains("get_customers"),
            "{}",
            e.model_message
        );
        assert!(tool.opened_by(r#"{"tools":"get_customers"}"#).is_err());
        assert!(tool.opened_by("[1]").is_err());
        assert_eq!(
            super::super::schema::strict_violation(&tool.definition().parameters, OPEN_TOOLS),
            None
        );
    }
}
