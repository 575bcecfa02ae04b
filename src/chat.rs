//! `altan-pay chat`: an interactive terminal session with a live model, against the Altan Pay
//! API or the embedded sandbox, showing tool calls as they happen.

use std::io::{BufRead, Write};

use tokio::sync::mpsc::unbounded_channel;

use crate::agent::{Agent, AgentEvent, Answer, TurnOptions};
use crate::room::{AgentContext, MemberKind, RoomMember, RoomMessage};

/// The room a terminal session pretends to be: you, Altan, and Altan Pay.
pub fn terminal_context(account_id: Option<String>) -> AgentContext {
    AgentContext {
        account_id,
        stripe_connect_id: None,
        agent_member_id: Some("altan-pay".into()),
        agent_name: Some("Altan Pay".into()),
        members: vec![
            RoomMember {
                member_id: "you".into(),
                name: "You".into(),
                kind: MemberKind::User,
            },
            RoomMember {
                member_id: "altan".into(),
                name: "Altan".into(),
                kind: MemberKind::Agent,
            },
            RoomMember {
                member_id: "altan-pay".into(),
                name: "Altan Pay".into(),
                kind: MemberKind::Agent,
            },
        ],
    }
}

/// Runs the session until end of input.
pub async fn run(agent: Agent, context: AgentContext) -> Result<(), String> {
    let thread = format!("chat-{}", uuid::Uuid::new_v4().simple());
    eprintln!("altan-pay chat: type a message and press Enter; Ctrl-D ends. Thread {thread}.");
    let stdin = std::io::stdin();
    loop {
        eprint!("you> ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read the terminal: {e}")),
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let message = RoomMessage {
            member_id: "you".into(),
            name: "You".into(),
            kind: MemberKind::User,
            text: text.to_string(),
        };
        let answer = turn(&agent, &thread, &context, Some(message), None).await?;
        for approval in &answer.approvals {
            eprint!(
                "approve {} {}? [y/N] ",
                approval.call.name, approval.call.arguments
            );
            let _ = std::io::stderr().flush();
            let mut reply = String::new();
            let _ = stdin.lock().read_line(&mut reply);
            let yes = reply.trim().eq_ignore_ascii_case("y");
            turn(
                &agent,
                &thread,
                &context,
                None,
                Some((approval.approval_id.clone(), yes)),
            )
            .await?;
        }
    }
}

/// One answer, printing events as they arrive.
async fn turn(
    agent: &Agent,
    thread: &str,
    context: &AgentContext,
    message: Option<RoomMessage>,
    approval: Option<(String, bool)>,
) -> Result<Answer, String> {
    let (tx, mut rx) = unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            print_event(&event);
        }
    });
    let options = TurnOptions {
        events: Some(tx),
        cancel: None,
    };
    let result = match (message, approval) {
        (Some(m), _) => agent.respond_with(thread, context, &[m], options).await,
        (None, Some((id, yes))) => {
            agent
                .decide_approval(thread, context, &id, yes, options)
                .await
        }
        (None, None) => return Err("nothing to answer".into()),
    };
    let _ = printer.await;
    result.map_err(|e| e.to_string())
}

fn print_event(event: &AgentEvent) {
    match event {
        AgentEvent::ToolCallStarted {
            name, arguments, ..
        } => {
            println!("  → {name} {}", abbreviate(arguments, 160));
        }
        AgentEvent::ToolCallFinished {
            name,
            result,
            error,
            ..
        } => {
            let mark = if error.is_some() { "✗" } else { "✓" };
            println!("  {mark} {name} {}", abbreviate(&result.to_string(), 160));
        }
        AgentEvent::Completed { answer } => {
            println!("\naltan-pay> {}\n", answer.text);
        }
        AgentEvent::Started { .. } | AgentEvent::TextDelta { .. } => {}
    }
}

/// Cuts long text on a character boundary.
pub(crate) fn abbreviate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}
