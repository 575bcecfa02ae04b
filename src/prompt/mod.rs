//! The Altan Pay system prompt: renders templates with `${block-id}` placeholders from YAML
//! block files in the layout of Altan's prompt repository, and builds the context message.

mod context;
mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

pub use context::{MemberKind, PromptContext, RoomMember, context_message};

/// The template the agent runs on unless told otherwise.
pub const DEFAULT_TEMPLATE: &str = "altan_pay";

/// Largest template or block file read from disk; prompt files are a few kB.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Largest rendered prompt; guards against blocks that double each other exponentially.
const MAX_RENDERED_BYTES: usize = 1 << 20;
/// Deepest chain of blocks including blocks; keeps recursion shallow on any input.
const MAX_DEPTH: usize = 32;

/// The project's own prompt files, compiled in. Listed one by one: a new file must be added
/// here (a test compares this list with `prompts/` on disk).
const EMBEDDED_TEMPLATES: &[(&str, &str)] = &[(
    "prompts/templates/altan_pay.md",
    include_str!("../../prompts/templates/altan_pay.md"),
)];
const EMBEDDED_BLOCKS: &[(&str, &str)] = &[
    (
        "prompts/blocks/room.yaml",
        include_str!("../../prompts/blocks/room.yaml"),
    ),
    (
        "prompts/blocks/plan.yaml",
        include_str!("../../prompts/blocks/plan.yaml"),
    ),
];

/// Everything that can go wrong loading or rendering prompts; each message names the file,
/// template or block at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// A prompt directory or file could not be read, is too large, or is not UTF-8.
    #[error("cannot read `{path}`: {detail}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error or the limit it broke.
        detail: String,
    },
    /// The prompt directory has no `templates/*.md`.
    #[error("no templates in `{dir}` (expected `templates/*.md`)")]
    NoTemplates {
        /// The prompt directory given.
        dir: PathBuf,
    },
    /// A block file is not valid YAML.
    #[error("malformed YAML in `{file}`{}: {detail}", at(*line, *column))]
    Yaml {
        /// The block file's path.
        file: String,
        /// 1-based line of the fault; `None` at the end of the input.
        line: Option<usize>,
        /// 1-based column of the fault.
        column: Option<usize>,
        /// The YAML parser's message.
        detail: String,
    },
    /// A block file is valid YAML but not a map of block id to text (a list, a nested map,
    /// an id placeholders cannot name).
    #[error("block file `{file}`{}: {detail}", at(*line, *column))]
    BlockFile {
        /// The block file's path.
        file: String,
        /// 1-based line of the offending entry.
        line: Option<usize>,
        /// 1-based column of the offending entry.
        column: Option<usize>,
        /// What is wrong with its shape.
        detail: String,
    },
    /// Two block files, or one twice, define the same block id.
    #[error("block `{id}` is defined twice: in `{first}` and in `{second}`")]
    DuplicateBlock {
        /// The block id.
        id: String,
        /// The first definition, as `file line N`.
        first: String,
        /// The second definition, as `file line N`.
        second: String,
    },
    /// [`PromptLibrary::render`] was asked for a template the library does not have.
    #[error("unknown template `{name}`; known templates: {}", known.join(", "))]
    UnknownTemplate {
        /// The name asked for.
        name: String,
        /// The library's template names, sorted.
        known: Vec<String>,
    },
    /// A placeholder names a block no block file defines.
    #[error(
        "template `{template}` uses `${{{block}}}`{}, but no block file defines block `{block}`",
        via_text(via)
    )]
    MissingBlock {
        /// The template being rendered.
        template: String,
        /// The missing block id.
        block: String,
        /// The blocks being expanded when it was met, outermost first; empty when the
        /// template itself names it.
        via: Vec<String>,
    },
    /// A placeholder names a block that is null, empty or only whitespace.
    #[error(
        "template `{template}` uses `${{{block}}}`{}, but block `{block}` in `{file}` is empty",
        via_text(via)
    )]
    EmptyBlock {
        /// The template being rendered.
        template: String,
        /// The empty block's id.
        block: String,
        /// The block file that defines it.
        file: String,
        /// The blocks being expanded when it was met, outermost first.
        via: Vec<String>,
    },
    /// Blocks include each other in a loop.
    #[error("template `{template}`: blocks include each other in a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The template being rendered.
        template: String,
        /// The block ids around the loop, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// Blocks include blocks deeper than the renderer allows.
    #[error("template `{template}`: blocks nest more than {MAX_DEPTH} deep: {}", chain.join(" -> "))]
    TooDeep {
        /// The template being rendered.
        template: String,
        /// The chain of block ids, outermost first.
        chain: Vec<String>,
    },
    /// A `${` that does not close on its line around a usable block id.
    #[error(
        "template `{template}`, {location} line {line}: {detail} (write `$${{` for a literal `${{`)"
    )]
    BadPlaceholder {
        /// The template being rendered.
        template: String,
        /// Where the text is: the template file or a block (with its file and line).
        location: String,
        /// 1-based line of the `${` within that text.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// The rendered prompt would pass the size limit (blocks that multiply each other).
    #[error("template `{template}` renders to more than {MAX_RENDERED_BYTES} bytes")]
    TooLarge {
        /// The template being rendered.
        template: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

fn via_text(via: &[String]) -> String {
    if via.is_empty() {
        String::new()
    } else {
        format!(" (through block {})", via.join(" -> "))
    }
}

/// A block id as placeholders can name it.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Debug, Clone)]
struct Template {
    file: String,
    text: String,
}

#[derive(Debug, Clone)]
struct Block {
    file: String,
    line: usize,
    text: Option<String>,
}

/// Loaded templates and blocks, ready to render.
///
/// Layout: a directory with `templates/*.md` (the template name is the file stem) and
/// `blocks/*.yaml` (each a map of block id to text; `.yml` is read too). Rendering rules:
/// - `${id}` is replaced by block `id`; blocks may contain placeholders themselves.
/// - `$${` writes a literal `${` (so `$${id}` renders as `${id}`); a lone `$` is just a `$`.
/// - A placeholder whose block is missing, null, empty or only whitespace is an error naming
///   the template and the block; so is a cycle of blocks, a block id defined twice (naming
///   both places), and a `${` that does not close on the same line around a usable id.
/// - Trailing line breaks of a block are dropped, so the template alone decides the spacing.
///
/// Context values (account id, member ids) are never spliced into a template: they go to the
/// model in a separate message built by [`context_message`].
///
/// ```
/// use altan_pay::prompt::PromptLibrary;
///
/// let lib = PromptLibrary::from_sources(
///     &[("templates/main.md", "Hello ${who}. Literal: $${who}")],
///     &[("blocks/a.yaml", "who: world\n")],
/// )?;
/// assert_eq!(lib.render("main")?, "Hello world. Literal: ${who}");
/// # Ok::<(), altan_pay::prompt::PromptError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PromptLibrary {
    templates: BTreeMap<String, Template>,
    blocks: HashMap<String, Block>,
    /// Set only by [`PromptLibrary::embedded`] when the compiled-in files do not load, so that
    /// constructor stays infallible and the problem still surfaces on render.
    defect: Option<PromptError>,
}

impl PromptLibrary {
    /// Loads `dir/templates/*.md` and `dir/blocks/*.yaml`. A missing `blocks/` is fine (the
    /// templates then must not use placeholders); a missing `templates/` is not.
    pub fn load(dir: &Path) -> Result<PromptLibrary, PromptError> {
        let meta = fs::metadata(dir).map_err(|e| read_error(dir, &e))?;
        if !meta.is_dir() {
            return Err(PromptError::Read {
                path: dir.to_path_buf(),
                detail: "not a directory".to_string(),
            });
        }
        let templates = read_files(&dir.join("templates"), &["md"], true)?;
        if templates.is_empty() {
            return Err(PromptError::NoTemplates {
                dir: dir.to_path_buf(),
            });
        }
        let blocks = read_files(&dir.join("blocks"), &["yaml", "yml"], false)?;
        let t: Vec<(&str, &str)> = templates
            .iter()
            .map(|(p, s)| (p.as_str(), s.as_str()))
            .collect();
        let b: Vec<(&str, &str)> = blocks
            .iter()
            .map(|(p, s)| (p.as_str(), s.as_str()))
            .collect();
        PromptLibrary::from_sources(&t, &b)
    }

    /// Builds a library from `(file path, contents)` pairs; the template name is the file stem.
    pub fn from_sources(
        templates: &[(&str, &str)],
        blocks: &[(&str, &str)],
    ) -> Result<PromptLibrary, PromptError> {
        let mut lib = PromptLibrary {
            templates: BTreeMap::new(),
            blocks: HashMap::new(),
            defect: None,
        };
        for (file, text) in templates {
            let name = Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(file)
                .to_string();
            lib.templates.insert(
                name,
                Template {
                    file: (*file).to_string(),
                    text: (*text).to_string(),
                },
            );
        }
        for (file, src) in blocks {
            for entry in yaml::parse_block_file(file, src)? {
                if let Some(first) = lib.blocks.get(&entry.id) {
                    return Err(PromptError::DuplicateBlock {
                        id: entry.id,
                        first: format!("{} line {}", first.file, first.line),
                        second: format!("{file} line {}", entry.line),
                    });
                }
                lib.blocks.insert(
                    entry.id,
                    Block {
                        file: (*file).to_string(),
                        line: entry.line,
                        text: entry.text,
                    },
                );
            }
        }
        Ok(lib)
    }

    /// The project's own `prompts/`, compiled in. Infallible: if the compiled-in files were
    /// broken (the tests make sure they are not), every render returns that load error.
    pub fn embedded() -> PromptLibrary {
        match PromptLibrary::from_sources(EMBEDDED_TEMPLATES, EMBEDDED_BLOCKS) {
            Ok(lib) => lib,
            Err(e) => PromptLibrary {
                templates: BTreeMap::new(),
                blocks: HashMap::new(),
                defect: Some(e),
            },
        }
    }

    /// Template names, sorted.
    pub fn template_names(&self) -> Vec<String> {
        self.templates.keys().cloned().collect()
    }

    /// Renders `template_name` with every placeholder resolved.
    pub fn render(&self, template_name: &str) -> Result<String, PromptError> {
        if let Some(e) = &self.defect {
            return Err(e.clone());
        }
        let template =
            self.templates
                .get(template_name)
                .ok_or_else(|| PromptError::UnknownTemplate {
                    name: template_name.to_string(),
                    known: self.template_names(),
                })?;
        let mut r = Renderer {
            lib: self,
            template: template_name,
            stack: Vec::new(),
            done: HashMap::new(),
        };
        r.expand(&template.text, &format!("file `{}`", template.file), 0)
    }

    /// Renders [`DEFAULT_TEMPLATE`].
    pub fn render_default(&self) -> Result<String, PromptError> {
        self.render(DEFAULT_TEMPLATE)
    }
}

fn read_error(path: &Path, e: &std::io::Error) -> PromptError {
    PromptError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Reads the files of `dir` with one of `exts`, sorted by name, as `(path, text)`.
fn read_files(
    dir: &Path,
    exts: &[&str],
    required: bool,
) -> Result<Vec<(String, String)>, PromptError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_error(dir, &e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| read_error(dir, &e))?.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e));
        if wanted && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let len = fs::metadata(&path)
            .map_err(|e| read_error(&path, &e))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(PromptError::Read {
                path,
                detail: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let bytes = fs::read(&path).map_err(|e| read_error(&path, &e))?;
        let text = String::from_utf8(bytes).map_err(|e| PromptError::Read {
            path: path.clone(),
            detail: format!("not UTF-8 text ({e})"),
        })?;
        files.push((path.display().to_string(), text));
    }
    Ok(files)
}

/// One render: the chain of blocks being expanded (for cycles) and the blocks already done.
struct Renderer<'a> {
    lib: &'a PromptLibrary,
    template: &'a str,
    stack: Vec<String>,
    done: HashMap<String, String>,
}

impl Renderer<'_> {
    /// Expands `text`; `location` names its source for errors, `first_line` is the line of
    /// the text within that source minus one.
    fn expand(
        &mut self,
        text: &str,
        location: &str,
        first_line: usize,
    ) -> Result<String, PromptError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
                continue;
            }
            let Some(tail) = after.strip_prefix("${") else {
                out.push('$');
                rest = &after[1..];
                continue;
            };
            let line_no = first_line + text[..text.len() - after.len()].matches('\n').count() + 1;
            let bad = |detail: String| PromptError::BadPlaceholder {
                template: self.template.to_string(),
                location: location.to_string(),
                line: line_no,
                detail,
            };
            let end = tail
                .find(['}', '\n'])
                .filter(|&i| tail.as_bytes()[i] == b'}');
            let Some(end) = end else {
                return Err(bad("`${` is not closed by `}` on the same line".to_string()));
            };
            let id = &tail[..end];
            if !valid_id(id) {
                return Err(bad(format!(
                    "`${{{}}}` is not a block id (letters, digits, `-`, `_`, `.`)",
                    id.chars().take(60).collect::<String>()
                )));
            }
            let expanded = self.block(id)?;
            out.push_str(&expanded);
            if out.len() > MAX_RENDERED_BYTES {
                return Err(PromptError::TooLarge {
                    template: self.template.to_string(),
                });
            }
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        if out.len() > MAX_RENDERED_BYTES {
            return Err(PromptError::TooLarge {
                template: self.template.to_string(),
            });
        }
        Ok(out)
    }

    /// The rendered text of block `id`, checked and cached.
    fn block(&mut self, id: &str) -> Result<String, PromptError> {
        if let Some(done) = self.done.get(id) {
            return Ok(done.clone());
        }
        if let Some(start) = self.stack.iter().position(|b| b == id) {
            let mut cycle = self.stack[start..].to_vec();
            cycle.push(id.to_string());
            return Err(PromptError::Cycle {
                template: self.template.to_string(),
                cycle,
            });
        }
        let lib = self.lib;
        let Some(block) = lib.blocks.get(id) else {
            return Err(PromptError::MissingBlock {
                template: self.template.to_string(),
                block: id.to_string(),
                via: self.stack.clone(),
            });
        };
        let text = match &block.text {
            Some(t) if !t.trim().is_empty() => t.trim_end_matches(['\n', '\r']),
            _ => {
                return Err(PromptError::EmptyBlock {
                    template: self.template.to_string(),
                    block: id.to_string(),
                    file: block.file.clone(),
                    via: self.stack.clone(),
                });
            }
        };
        if self.stack.len() >= MAX_DEPTH {
            let mut chain = self.stack.clone();
            chain.push(id.to_string());
            return Err(PromptError::TooDeep {
                template: self.template.to_string(),
                chain,
            });
        }
        self.stack.push(id.to_string());
        let location = format!("block `{id}` (`{}` line {})", block.file, block.line);
        let result = self.expand(text, &location, 0);
        self.stack.pop();
        let rendered = result?;
        self.done.insert(id.to_string(), rendered.clone());
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(template: &str, blocks: &str) -> Result<PromptLibrary, PromptError> {
        PromptLibrary::from_sources(&[("t/main.md", template)], &[("b/x.yaml", blocks)])
    }

    fn render(template: &str, blocks: &str) -> Result<String, PromptError> {
        lib(template, blocks)?.render("main")
    }

    #[test]
    fn substitutes_nested_blocks_and_trims_trailing_newlines() {
        let out = render("A ${a} Z\n", "a: |\n  one ${b}\n\nb: two\nunused: ~\n").unwrap();
        assert_eq!(out, "A one two Z\n");
    }

    #[test]
    fn escape_writes_a_literal_placeholder() {
        let out = render("$${a} costs $5 and $$ stays; ${a}", "a: x").unwrap();
        assert_eq!(out, "${a} costs $5 and $$ stays; x");
        // An escape inside a block stays literal and is not expanded again by the parent.
        let out = render("${a}", "a: 'see $${b}'").unwrap();
        assert_eq!(out, "see ${b}");
    }

    #[test]
    fn missing_block_through_a_chain_names_the_chain() {
        let e = render("${a}", "a: 'x ${b}'").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("`main`") && text.contains("`b`") && text.contains("through block a"),
            "{text}"
        );
    }

    #[test]
    fn self_reference_and_longer_cycles_are_named() {
        let e = render("${a}", "a: '${a}'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "template `main`: blocks include each other in a cycle: a -> a"
        );
        let e = render("${a}", "a: '${b}'\nb: '${c}'\nc: '${a}'").unwrap_err();
        assert!(e.to_string().contains("a -> b -> c -> a"), "{e}");
    }

    #[test]
    fn null_and_blank_blocks_are_empty() {
        for v in ["", "~", "null", "'   '", "\"\\n\\n\""] {
            let e = render("x ${a}", &format!("a: {v}\n")).unwrap_err();
            assert!(matches!(e, PromptError::EmptyBlock { .. }), "{v}: {e}");
            assert!(e.to_string().contains("b/x.yaml"), "{e}");
        }
        // An empty block nobody uses is fine.
        assert_eq!(render("x", "a:\n").unwrap(), "x");
    }

    #[test]
    fn malformed_placeholders_name_the_line() {
        let e = render("ok\n${a\n", "a: x").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = render("${a b}", "a: x").unwrap_err();
        assert!(matches!(e, PromptError::BadPlaceholder { .. }), "{e}");
        let e = render("${}", "a: x").unwrap_err();
        assert!(matches!(e, PromptError::BadPlaceholder { .. }), "{e}");
        let e = render("${a}", "a: '${'").unwrap_err();
        assert!(e.to_string().contains("block `a`"), "{e}");
    }

    #[test]
    fn block_files_with_the_wrong_shape_are_refused_with_a_line() {
        for (src, want) in [
            ("- a\n- b\n", "map of block id"),
            ("a: [1, 2]\n", "must be text"),
            ("a:\n  b: c\n", "must be text"),
            ("? [k]\n: v\n", "plain text"),
            ("a b: x\n", "not a usable block id"),
            ("a: x\n---\nb: y\n", "more than one"),
            ("a: x\na: y\n", "defined twice"),
            ("a: 'x\n", "malformed YAML"),
            ("a: *nothing\n", "b/x.yaml"),
        ] {
            let e = lib("t", src).unwrap_err().to_string();
            assert!(e.contains("b/x.yaml") && e.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn anchors_to_text_work_and_empty_files_are_fine() {
        assert_eq!(render("${b}", "a: &s shared\nb: *s\n").unwrap(), "shared");
        assert_eq!(render("x", "").unwrap(), "x");
        assert_eq!(render("x", "# only a comment\n").unwrap(), "x");
        assert_eq!(render("x", "---\n").unwrap(), "x");
        // Scalars that YAML would read as numbers or booleans are kept as written.
        assert_eq!(
            render("${a}${b}", "a: 0x10\nb: true\n").unwrap(),
            "0x10true"
        );
    }

    #[test]
    fn exponential_blocks_and_deep_chains_stop_with_an_error() {
        let mut blocks = String::new();
        for i in 0..40 {
            blocks.push_str(&format!("b{i}: '${{b{}}}${{b{}}}'\n", i + 1, i + 1));
        }
        blocks.push_str("b40: 'xxxxxxxxxxxxxxxx'\n");
        let e = render("${b0}", &blocks).unwrap_err();
        assert!(
            matches!(
                e,
                PromptError::TooDeep { .. } | PromptError::TooLarge { .. }
            ),
            "{e}"
        );
        let mut blocks = String::new();
        for i in 0..20 {
            blocks.push_str(&format!("b{i}: '${{b{}}}${{b{}}}'\n", i + 1, i + 1));
        }
        blocks.push_str("b20: 'xxxxxxxxxxxxxxxx'\n");
        let e = render("${b0}", &blocks).unwrap_err();
        assert!(matches!(e, PromptError::TooLarge { .. }), "{e}");
    }

    /// A cheap fuzz: arbitrary bytes and mutations of valid files never panic.
    #[test]
    fn arbitrary_input_never_panics() {
        let seeds = [
            "a: |\n  x ${b}\nb: \"y\"\n",
            "a: [1, {b: c}]\n&x k: *x\n",
            "${a}$${b}${",
            "? - x\n: y\n--- !tag\n%YAML 1.2\n",
        ];
        let alphabet: &[u8] = b"ab:${}-'\"|>\n #&*!?[],%~\t\\";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..4000 {
            let mut s: Vec<u8> = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..(next() % 8) {
                let pos = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                if next() % 2 == 0 && pos < s.len() {
                    s[pos] = c;
                } else {
                    s.insert(pos, c);
                }
            }
            let text = String::from_utf8_lossy(&s).into_owned();
            let _ = render(&text, &text);
            let _ = render("${a}${b}", &text);
        }
    }
}
