//! The multi-agent room as the agent sees it: members, messages and the trusted context the
//! platform gives with each request.

use serde::{Deserialize, Serialize};

/// A person or an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// A person.
    User,
    /// An agent (Altan, Altan Pay, Interface...).
    Agent,
}

/// A member of the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMember {
    /// The platform's id of the member.
    pub member_id: String,
    /// The member's display name, as others address it (`@Altan`).
    pub name: String,
    /// Person or agent.
    pub kind: MemberKind,
}

/// One message posted in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMessage {
    /// The author's member id.
    pub member_id: String,
    /// The author's display name.
    pub name: String,
    /// Whether a person or an agent wrote it.
    pub kind: MemberKind,
    /// The message as posted.
    pub text: String,
}

/// Facts from the platform, trusted because they do not come from the conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentContext {
    /// The Altan account (workspace) id the agent acts for.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The account's Stripe Connect id, trusted as given: the library trusts its embedder to
    /// put here the id it resolved itself for `account_id` (when absent, the tools look it up
    /// through the Altan Pay API). `altan-pay serve` never passes a caller's value through:
    /// it resolves the id per account and refuses a request naming another one.
    #[serde(default)]
    pub stripe_connect_id: Option<String>,
    /// This agent's member id in the room.
    #[serde(default)]
    pub agent_member_id: Option<String>,
    /// This agent's name in the room (default "Altan Pay").
    #[serde(default)]
    pub agent_name: Option<String>,
    /// Everyone in the room, Altan included.
    #[serde(default)]
    pub members: Vec<RoomMember>,
}

/// Altan's name in the room: the agent that owns the database and receives every handoff.
pub const ALTAN: &str = "Altan";

impl AgentContext {
    /// This agent's name in the room: `agent_name` when set, else "Altan Pay".
    pub fn agent_name(&self) -> &str {
        self.agent_name.as_deref().unwrap_or("Altan Pay")
    }

    /// Altan's member, found by name among the agents.
    pub fn altan(&self) -> Option<&RoomMember> {
        self.members
            .iter()
            .find(|m| m.kind == MemberKind::Agent && m.name.eq_ignore_ascii_case(ALTAN))
    }

    /// Whether a message was written by this agent.
    pub fn is_self(&self, message: &RoomMessage) -> bool {
        match &self.agent_member_id {
            Some(id) => message.member_id == *id,
            None => message.name == self.agent_name(),
        }
    }
}
