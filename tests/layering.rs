//! The layering of `src/`: each part (a top-level module) may use only the parts below it,
//! and no two files of one part use each other in a circle. `LAYERS` is the one place the
//! order is declared; docs/architecture.md explains it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The parts from the bottom up. A part may use only the parts before it in this list.
const LAYERS: &[&str] = &[
    // Leaves, with no part below them: shared vocabulary, and the tracing set-up.
    "retry",
    "room",
    "stripe",
    "telemetry",
    // The Altan Pay API client, and the local Altan Pay API server on the same route table.
    "pay",
    "gateway",
    // Stripe changes become database rows; the database side that applies them.
    "sync",
    "mirror",
    // What the model can call, and the rules checked before a call runs.
    "tools",
    "policy",
    // The system prompt and the model client.
    "prompt",
    "model",
    // What operators watch: counters and histograms every part below the server updates.
    "metrics",
    // The loop as a state machine, and the agent that drives it.
    "engine",
    "agent",
    // Where sessions live, and what several commands set up alike.
    "store",
    "config",
    // Stripe's events and the reconciliation of the mirror.
    "events",
    // The tools over the Model Context Protocol (stdio; `/mcp` is mounted by the server).
    "mcp",
    // The chat endpoint.
    "server",
    // Recorded conversations, the terminal chat, and the command line on top.
    "transcript",
    "chat",
    "cli",
];

/// Files that only declare or start the crate.
const ROOTS: &[&str] = &["lib.rs", "main.rs"];

/// One source file: its module path (`["agent", "turn"]`) and its code without comments.
struct Source {
    module: Vec<String>,
    code: String,
}

/// The tree checked: `src/`, or another checkout's `src/` named by `LAYERING_SRC` (to see
/// what an older tree breaks).
fn src_dir() -> PathBuf {
    std::env::var_os("LAYERING_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn every_part_uses_only_the_parts_below_it() {
    let sources = read_tree(&src_dir());
    assert!(
        sources.len() > 50,
        "read only {} files from src/",
        sources.len()
    );
    let problems = layer_violations(&sources, LAYERS);
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// The engine runs the loop for any tools: which tools a call carries, and how their results
/// read, is the agent's tool exposure, handed to it (`engine::ToolHistory`).
#[test]
fn the_engine_names_no_tool() {
    let schemas =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/schemas.json"))
            .expect("tools/schemas.json");
    let schemas: serde_json::Value = serde_json::from_str(&schemas).expect("JSON");
    let mut names: Vec<String> = schemas
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/function/name")?.as_str().map(str::to_string))
        .collect();
    names.push("open_tools".into());
    let mut found = Vec::new();
    for src in read_tree(&src_dir()) {
        if src.module.first().map(String::as_str) != Some("engine") {
            continue;
        }
        for name in &names {
            if src.code.contains(&format!("\"{name}\"")) {
                found.push(format!("{}: \"{name}\"", src.module.join("::")));
            }
        }
        for module in ["tools::open", "tools::digest", "OPEN_TOOLS"] {
            if src.code.contains(module) {
                found.push(format!("{}: {module}", src.module.join("::")));
            }
        }
    }
    assert!(found.is_empty(), "the engine names tools: {found:?}");
}

#[test]
fn no_files_of_one_part_use_each_other_in_a_circle() {
    let sources = read_tree(&src_dir());
    let circles = file_circles(&sources);
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn an_upward_import_is_caught() {
    let sources = vec![
        source(
            &["pay", "client"],
            "use crate::server::ServerState;\nfn f() {}",
        ),
        source(&["server"], "use crate::pay::PayClient;"),
        source(
            &["stripe", "mod"],
            "// use crate::server::X; is only a comment",
        ),
    ];
    let problems = layer_violations(&sources, LAYERS);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("pay") && problems[0].contains("server"));
}

#[test]
fn an_upward_import_through_super_and_a_brace_group_is_caught() {
    let sources = vec![
        source(&["sync"], "use super::{stripe::Product, agent::Agent};"),
        source(
            &["tools", "catalog", "mod"],
            "use crate::{pay, events::Intake};",
        ),
    ];
    let problems = layer_violations(&sources, LAYERS);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("`sync` uses `agent`")));
    assert!(problems.iter().any(|p| p.contains("`tools` uses `events`")));
}

#[test]
fn an_unlisted_part_is_refused() {
    let problems = layer_violations(&[source(&["billing"], "fn f() {}")], LAYERS);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("billing"));
}

#[test]
fn a_circle_between_sibling_files_is_caught() {
    let sources = vec![
        source(&["pay", "mod"], "mod client; mod error;"),
        source(&["pay", "client"], "use super::error::PayError;"),
        source(&["pay", "error"], "use crate::pay::client::is_retryable;"),
        source(
            &["pay", "routes"],
            "use super::error::PayError; use super::Thing;",
        ),
    ];
    let circles = file_circles(&sources);
    assert_eq!(circles.len(), 1, "{circles:?}");
    assert!(circles[0].contains("pay::client") && circles[0].contains("pay::error"));
}

fn source(module: &[&str], code: &str) -> Source {
    let mut module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    Source {
        module,
        code: strip_comments(code),
    }
}

fn read_tree(root: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect_rs(root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(root).ok()?;
            let name = rel.to_str()?;
            if ROOTS.contains(&name) {
                return None;
            }
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let code = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            Some(Source {
                module,
                code: strip_comments(&code),
            })
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Line comments (doc comments included) go: a path named in prose is not a dependency.
/// String literals stay; a `crate::` inside one is rare enough to be fixed where it happens.
fn strip_comments(code: &str) -> String {
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path a file names, absolute from the crate root: `crate::a::b`,
/// `super::b` and `self::b`, with brace groups (`crate::{a::X, b}`) spread out.
fn referenced_paths(src: &Source) -> Vec<Vec<String>> {
    let code = &src.code;
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let prefix = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|p| rest.starts_with(p));
        match (starts_word, prefix) {
            (true, Some(_)) => {
                let end = path_end(rest);
                for path in expand(&rest[..end]) {
                    if let Some(abs) = absolute(&src.module, &path) {
                        out.push(abs);
                    }
                }
                i += end.max(1);
            }
            _ => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Where a path starting at the beginning of `text` ends, braces included.
fn path_end(text: &str) -> usize {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return at,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ if depth > 0 => {}
            c if c.is_alphanumeric() || c == '_' || c == ':' => {}
            _ => return at,
        }
    }
    text.len()
}

/// `crate::{a::{X, Y}, b}` becomes `crate::a::X`, `crate::a::Y`, `crate::b`.
fn expand(path: &str) -> Vec<Vec<String>> {
    let Some(open) = path.find('{') else {
        return vec![
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        ];
    };
    let head: Vec<String> = path[..open]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let inner = path[open + 1..].trim_end_matches('}');
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(|p| p.split_whitespace().next().unwrap_or(""))
        .filter(|p| !p.is_empty())
        .flat_map(expand)
        .map(|tail| head.iter().cloned().chain(tail).collect())
        .collect()
}

/// Resolves `crate::`, `super::` and `self::` against the file's module path.
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut at: Vec<String> = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                at.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    at.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(at)
}

fn layer_violations(sources: &[Source], layers: &[&str]) -> Vec<String> {
    let rank = |part: &str| layers.iter().position(|l| *l == part);
    let mut problems = BTreeSet::new();
    for src in sources {
        let Some(part) = src.module.first() else {
            continue;
        };
        let Some(own) = rank(part) else {
            problems.insert(format!(
                "`{part}` is not in LAYERS (tests/layering.rs): place it in the order"
            ));
            continue;
        };
        for path in referenced_paths(src) {
            let Some(target) = path.first() else { continue };
            if target == part {
                continue;
            }
            match rank(target) {
                Some(theirs) if theirs < own => {}
                Some(_) => {
                    problems.insert(format!(
                        "`{part}` uses `{target}` (in {}), a part above it",
                        src.module.join("::")
                    ));
                }
                // Not a part: a crate-root item such as a macro, or a local `self::x`.
                None => {}
            }
        }
    }
    problems.into_iter().collect()
}

/// Circles among the files of one part. A file naming its own ancestor (`super::Item`) or
/// descendant (`mod x; pub use x::Y`) is how Rust modules are built and is not counted.
fn file_circles(sources: &[Source]) -> Vec<String> {
    let files: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let file_of = |path: &[String]| -> Option<Vec<String>> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| files.contains(p))
    };
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for src in sources {
        for path in referenced_paths(src) {
            let Some(target) = file_of(&path) else {
                continue;
            };
            let related =
                target.starts_with(&src.module) || src.module.starts_with(target.as_slice());
            if !related && target.first() == src.module.first() {
                edges.entry(src.module.clone()).or_default().insert(target);
            }
        }
    }
    let mut circles = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut ring: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    let first = ring.iter().min().cloned().unwrap_or_default();
                    let turn = ring.iter().position(|m| *m == first).unwrap_or(0);
                    ring.rotate_left(turn);
                    circles.insert(format!("{} -> {}", ring.join(" -> "), first));
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    circles.into_iter().collect()
}
