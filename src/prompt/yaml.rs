//! Reads one block file (`blocks/*.yaml`): a YAML map of block id to text, read as parser
//! events so no tree is built and every key keeps its line for error messages.

// YAML library: `saphyr-parser`, the event parser of the saphyr project (the maintained
// successor of yaml-rust and yaml-rust2, whose README points new work to saphyr): pure Rust,
// YAML 1.2, a position on every event and error. `serde_yaml` is deprecated; its forks
// `serde_yaml_ng` and `serde_norway` would build a tree and give no line for a duplicate or
// badly shaped key. Events also mean no deep tree to build or drop on hostile input.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use super::{PromptError, valid_id};

/// One entry of a block file. `text` is `None` for a null value (`key:`, `key: ~`).
#[derive(Debug, Clone)]
pub(crate) struct BlockEntry {
    pub id: String,
    pub text: Option<String>,
    pub line: usize,
}

/// Parses `src` (the contents of `file`) into its entries, in file order.
pub(crate) fn parse_block_file(file: &str, src: &str) -> Result<Vec<BlockEntry>, PromptError> {
    let mut events = Events {
        file,
        parser: Parser::new_from_str(src),
    };
    let mut entries = Vec::new();
    // StreamStart, then either nothing (an empty or comment-only file) or one document.
    events.next()?;
    let (event, span) = events.next()?;
    match event {
        Event::StreamEnd => return Ok(entries),
        Event::DocumentStart(_) => {}
        other => return Err(events.shape(span, format!("unexpected {}", describe(&other)))),
    }
    let (event, span) = events.next()?;
    match event {
        Event::MappingStart(..) => read_mapping(&mut events, &mut entries)?,
        // `---` alone: a document with no content.
        Event::Scalar(ref v, ScalarStyle::Plain, ..) if is_null(v) => {}
        other => {
            return Err(events.shape(
                span,
                format!(
                    "the file must be a map of block id to text, found {}",
                    describe(&other)
                ),
            ));
        }
    }
    let (event, span) = events.next()?;
    if !matches!(event, Event::DocumentEnd) {
        return Err(events.shape(span, format!("unexpected {}", describe(&event))));
    }
    let (event, span) = events.next()?;
    match event {
        Event::StreamEnd => Ok(entries),
        _ => Err(events.shape(
            span,
            "more than one YAML document; put all blocks of a file in one map".to_string(),
        )),
    }
}

fn read_mapping(
    events: &mut Events<'_, '_>,
    entries: &mut Vec<BlockEntry>,
) -> Result<(), PromptError> {
    // Scalar anchors, so `other: *shared` works; collections are refused anyway.
    let mut anchors: HashMap<usize, Option<String>> = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    loop {
        let (event, span) = events.next()?;
        let id = match event {
            Event::MappingEnd => return Ok(()),
            Event::Scalar(key, ..) => key.into_owned(),
            other => {
                return Err(events.shape(
                    span,
                    format!("a block id must be plain text, found {}", describe(&other)),
                ));
            }
        };
        let line = span.start.line();
        if !valid_id(&id) {
            return Err(events.shape(
                span,
                format!(
                    "`{id}` is not a usable block id (use letters, digits, `-`, `_`, `.`; no spaces, `$`, braces)"
                ),
            ));
        }
        if let Some(first) = seen.get(&id) {
            return Err(PromptError::DuplicateBlock {
                id,
                first: format!("{} line {first}", events.file),
                second: format!("{} line {line}", events.file),
            });
        }
        seen.insert(id.clone(), line);
        let (event, span) = events.next()?;
        let text = match event {
            Event::Scalar(v, style, anchor, _tag) => {
                let text = if style == ScalarStyle::Plain && is_null(&v) {
                    None
                } else {
                    Some(v.into_owned())
                };
                if anchor != 0 {
                    anchors.insert(anchor, text.clone());
                }
                text
            }
            Event::Alias(anchor) => match anchors.get(&anchor) {
                Some(text) => text.clone(),
                None => {
                    return Err(events.shape(
                        span,
                        format!("block `{id}` refers to an anchor that is not a text value"),
                    ));
                }
            },
            other => {
                return Err(events.shape(
                    span,
                    format!("block `{id}` must be text, found {}", describe(&other)),
                ));
            }
        };
        entries.push(BlockEntry { id, text, line });
    }
}

/// YAML's plain null spellings; such a block counts as empty.
fn is_null(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

fn describe(event: &Event<'_>) -> &'static str {
    match event {
        Event::Scalar(..) => "text",
        Event::SequenceStart(..) => "a list",
        Event::MappingStart(..) => "a map",
        Event::Alias(..) => "an alias",
        Event::StreamEnd => "end of file",
        Event::DocumentStart(..) => "a new document",
        _ => "YAML structure",
    }
}

struct Events<'f, 'i> {
    file: &'f str,
    parser: Parser<'i, saphyr_parser::StrInput<'i>>,
}

impl<'i> Events<'_, 'i> {
    fn next(&mut self) -> Result<(Event<'i>, Span), PromptError> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(self.syntax(&e)),
            None => Err(PromptError::Yaml {
                file: self.file.to_string(),
                line: None,
                column: None,
                detail: "unexpected end of input".to_string(),
            }),
        }
    }

    fn syntax(&self, e: &ScanError) -> PromptError {
        PromptError::Yaml {
            file: self.file.to_string(),
            line: Some(e.marker().line()),
            column: Some(e.marker().col() + 1),
            detail: e.info().to_string(),
        }
    }

    fn shape(&self, span: Span, detail: String) -> PromptError {
        PromptError::BlockFile {
            file: self.file.to_string(),
            line: Some(span.start.line()),
            column: Some(span.start.col() + 1),
            detail,
        }
    }
}
