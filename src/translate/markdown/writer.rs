//! The tree walker behind [`to_markdown`](super::to_markdown) and [`to_plain`](super::to_plain).
//!
//! Blocks are written one by one and joined by blank lines; list items and quotes prefix their
//! blocks' lines. Inline content goes into one paragraph buffer, and each node is told which
//! character follows it, because whether `**` opens or closes in markdown depends on its
//! neighbours: where it would not, the text goes without it rather than with a stray `**`.

use std::cell::Cell;
use std::fmt::Write as _;

use super::super::html::{Element, Node, is_block, text_content};
use super::escape;

pub(super) struct Writer {
    md: bool,
    /// The first character written after the node being written (`None`: a line end), which
    /// decides whether emphasis delimiters can close there.
    after: Cell<Option<char>>,
    /// Emphasis kinds open around the node being written (bit per kind): `**a **b** c**` would
    /// not parse back, and bold inside bold adds nothing.
    active: Cell<u8>,
    /// Where the last closing delimiter or code fence ended: a delimiter of the same kind right
    /// there would merge with it into one run.
    closed_at: Cell<usize>,
}

impl Writer {
    pub(super) fn new(md: bool) -> Self {
        Self { md, after: Cell::new(None), active: Cell::new(0), closed_at: Cell::new(usize::MAX) }
    }

    pub(super) fn document(&self, nodes: &[Node]) -> String {
        let mut blocks = Vec::new();
        self.blocks(nodes, &mut blocks);
        blocks.join("\n\n")
    }

    fn blocks<'a>(&self, nodes: impl IntoIterator<Item = &'a Node>, out: &mut Vec<String>) {
        let mut para = String::new();
        let mut run = Vec::new();
        for node in nodes {
            match node {
                Node::Element(e) if is_block(&e.name) => {
                    self.paragraph(&mut run, &mut para, out);
                    self.block(e, out);
                }
                _ => run.push(node),
            }
        }
        self.paragraph(&mut run, &mut para, out);
    }

    /// Writes a run of inline nodes as one paragraph (a line end follows it).
    fn paragraph(&self, run: &mut Vec<&Node>, para: &mut String, out: &mut Vec<String>) {
        let outer = self.after.replace(None);
        self.inlines(run.drain(..), para);
        self.after.set(outer);
        self.flush(para, out);
    }

    /// Writes inline nodes in order, each knowing what follows it.
    fn inlines<'a>(&self, nodes: impl IntoIterator<Item = &'a Node>, para: &mut String) {
        let nodes: Vec<&Node> = nodes.into_iter().collect();
        let outer = self.after.get();
        let mut next = outer;
        let mut hints = vec![outer; nodes.len()];
        for (hint, node) in hints.iter_mut().zip(&nodes).rev() {
            *hint = next;
            next = first_char(node).or(next);
        }
        for (node, hint) in nodes.iter().zip(hints) {
            self.after.set(hint);
            self.inline(node, para);
        }
        self.after.set(outer);
    }

    /// Ends a paragraph: trims it and turns line breaks into markdown hard breaks.
    fn flush(&self, para: &mut String, out: &mut Vec<String>) {
        let lines: Vec<&str> = para.trim().lines().map(str::trim_end).collect();
        if !lines.is_empty() {
            out.push(lines.join(if self.md { "\\\n" } else { "\n" }));
        }
        para.clear();
    }

    fn block(&self, e: &Element, out: &mut Vec<String>) {
        match e.name.as_str() {
            h @ ("h1" | "h2" | "h3" | "h4" | "h5" | "h6") => {
                let text = self.line(&e.children);
                if !text.is_empty() {
                    let level = usize::from(h.as_bytes()[1] - b'0');
                    out.push(if self.md { format!("{} {text}", "#".repeat(level)) } else { text });
                }
            }
            "blockquote" => {
                let inner = self.document(&e.children);
                if !inner.is_empty() {
                    out.push(prefix_lines(&inner, "> ", ">"));
                }
            }
            "ul" | "ol" => self.list(e, out),
            "li" => self.list_items(&[e.children.iter().collect()], false, 1, out),
            "pre" => self.code_block(e, out),
            "hr" => out.push("---".to_owned()),
            "table" => self.table(e, out),
            _ => self.blocks(&e.children, out),
        }
    }

    /// Inline content on one line (headings, table cells).
    fn line(&self, nodes: &[Node]) -> String {
        let mut s = String::new();
        let outer = self.after.replace(None);
        self.inlines(nodes, &mut s);
        self.after.set(outer);
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// A list; text and elements outside `<li>` form items of their own, so no words are lost.
    fn list(&self, e: &Element, out: &mut Vec<String>) {
        let ordered = e.name == "ol";
        let start = e.attr("start").and_then(|s| s.parse().ok()).unwrap_or(1u32);
        let mut items: Vec<Vec<&Node>> = Vec::new();
        let mut loose: Vec<&Node> = Vec::new();
        for child in &e.children {
            match child {
                Node::Element(li) if li.name == "li" => {
                    if !loose.is_empty() {
                        items.push(std::mem::take(&mut loose));
                    }
                    items.push(li.children.iter().collect());
                }
                Node::Text(t) if t.trim().is_empty() => {}
                other => loose.push(other),
            }
        }
        if !loose.is_empty() {
            items.push(loose);
        }
        self.list_items(&items, ordered, start, out);
    }

    fn list_items(&self, items: &[Vec<&Node>], ordered: bool, start: u32, out: &mut Vec<String>) {
        let mut lines = Vec::new();
        for (n, item) in (start..).zip(items) {
            let marker = if ordered { format!("{n}. ") } else { "- ".to_owned() };
            let mut blocks = Vec::new();
            self.blocks(item.iter().copied(), &mut blocks);
            let mut body = String::new();
            for (i, b) in blocks.iter().enumerate() {
                if i > 0 {
                    body.push_str(if starts_list(b) { "\n" } else { "\n\n" });
                }
                body.push_str(b);
            }
            if body.is_empty() {
                continue;
            }
            let indent = " ".repeat(marker.len());
            let text = prefix_lines(&body, &indent, "");
            lines.push(format!("{}{}", marker.trim_end(), text.get(marker.len() - 1..).unwrap_or("")));
        }
        if !lines.is_empty() {
            out.push(lines.join("\n"));
        }
    }

    fn code_block(&self, e: &Element, out: &mut Vec<String>) {
        let lang = e
            .children
            .iter()
            .find_map(|c| match c {
                Node::Element(code) if code.name == "code" => code.attr("class"),
                _ => None,
            })
            .and_then(|class| class.split_whitespace().find_map(|c| c.strip_prefix("language-")))
            .unwrap_or("");
        let code = text_content(&e.children);
        let code = code.strip_suffix('\n').unwrap_or(&code);
        if !self.md {
            if !code.is_empty() {
                out.push(code.to_owned());
            }
            return;
        }
        let fence = "`".repeat(longest_run(code, '`').max(2) + 1);
        out.push(format!("{fence}{lang}\n{code}\n{fence}"));
    }

    fn table(&self, e: &Element, out: &mut Vec<String>) {
        let mut rows: Vec<Vec<String>> = Vec::new();
        self.rows(&e.children, &mut rows, out);
        let Some(cols) = rows.iter().map(Vec::len).max().filter(|&c| c > 0) else { return };
        let row = |cells: &[String]| {
            let mut cells = cells.to_vec();
            cells.resize(cols, String::new());
            if self.md { format!("| {} |", cells.join(" | ")) } else { cells.join(" | ") }
        };
        let mut lines = vec![row(&rows[0])];
        if self.md {
            lines.push(format!("|{}", " --- |".repeat(cols)));
        }
        lines.extend(rows[1..].iter().map(|r| row(r)));
        out.push(lines.join("\n"));
    }

    fn rows(&self, nodes: &[Node], rows: &mut Vec<Vec<String>>, out: &mut Vec<String>) {
        for node in nodes {
            let Node::Element(e) = node else { continue };
            match e.name.as_str() {
                "tr" => rows.push(
                    e.children
                        .iter()
                        .filter_map(|c| match c {
                            Node::Element(cell) if cell.name == "td" || cell.name == "th" => {
                                let text = self.line(&cell.children);
                                Some(text)
                            }
                            _ => None,
                        })
                        .collect(),
                ),
                "caption" => self.blocks(&e.children, out),
                _ => self.rows(&e.children, rows, out),
            }
        }
    }

    fn inline(&self, node: &Node, para: &mut String) {
        let e = match node {
            Node::Text(t) => return self.text(t, para),
            Node::Element(e) => e,
        };
        let children = |para: &mut String| self.inlines(&e.children, para);
        let after = self.after.get();
        match e.name.as_str() {
            "br" => {
                let trimmed = para.trim_end_matches(' ').len();
                para.truncate(trimmed);
                para.push('\n');
            }
            "strong" | "b" if self.md => self.emphasis(para, 1, "**", after, children),
            "em" | "i" if self.md => self.emphasis(para, 2, "*", after, children),
            "del" | "s" | "strike" if self.md => self.emphasis(para, 4, "~~", after, children),
            "code" => {
                let code = collapse(&text_content(&e.children));
                if code.is_empty() {
                    return;
                }
                if self.md {
                    if self.closed_at.get() == para.len() && para.ends_with('`') {
                        // Adjacent code spans would merge their backtick runs.
                        para.push(' ');
                    }
                    let fence = "`".repeat(longest_run(&code, '`') + 1);
                    let pad = if code.starts_with('`') || code.ends_with('`') { " " } else { "" };
                    let _ = write!(para, "{fence}{pad}{code}{pad}{fence}");
                    self.closed_at.set(para.len());
                } else {
                    self.text(&code, para);
                }
            }
            "a" => self.link(e, para),
            "img" => self.text(e.attr("alt").unwrap_or(""), para),
            _ => children(para),
        }
    }

    /// Emphasis of kind `bit`, unless already inside one.
    fn emphasis(&self, para: &mut String, bit: u8, delim: &str, after: Option<char>, f: impl FnOnce(&mut String)) {
        let active = self.active.get();
        if active & bit != 0 {
            return f(para);
        }
        self.active.set(active | bit);
        let glued = self.closed_at.get() == para.len() && para.ends_with(&delim[..1]);
        if let Some(end) = wrap(para, delim, after, glued, f) {
            self.closed_at.set(end);
        }
        self.active.set(active);
    }

    fn link(&self, e: &Element, para: &mut String) {
        let href = e.attr("href").unwrap_or("");
        let start = para.len();
        let outer = self.after.replace(Some(']'));
        self.inlines(&e.children, para);
        self.after.set(outer);
        if href.is_empty() {
            return;
        }
        // Surrounding whitespace and line breaks go outside the brackets.
        let text = para.split_off(start);
        let core = text.trim();
        let lead = &text[..text.len() - text.trim_start().len()];
        let trail = &text[lead.len() + core.len()..];
        let mention = href.starts_with("mimi://") || href.starts_with("https://matrix.to/#/@");
        match (self.md, core.is_empty()) {
            (true, true) => para.push_str(&text),
            (true, false) => {
                let _ = write!(para, "{lead}[{core}]({}){trail}", link_target(href));
            }
            (false, true) => self.text(href, para),
            (false, false) if mention || core == href => para.push_str(&text),
            (false, false) => {
                let _ = write!(para, "{lead}{core} ({href}){trail}");
            }
        }
    }

    fn text(&self, raw: &str, para: &mut String) {
        let collapsed = collapse(raw);
        let skip = para.is_empty() || para.ends_with([' ', '\n']);
        let text = if skip { collapsed.trim_start_matches(' ') } else { &collapsed };
        if text.is_empty() {
            return;
        }
        if self.md {
            let line_start = para.is_empty() || para.ends_with('\n');
            para.push_str(&escape(text, line_start, para.chars().next_back()));
        } else {
            para.push_str(text);
        }
    }
}

/// Puts `delim` around what `f` writes, returning where the closing one ends. Surrounding
/// whitespace moves outside the delimiters (`CommonMark` does not open or close emphasis next to
/// whitespace). Intraword emphasis parses differently from reader to reader, and a delimiter
/// `glued` to a closing one of the same character merges with it into one run; there the text
/// goes without delimiters: a lost bold beats a stray `**`.
fn wrap(
    para: &mut String,
    delim: &str,
    after: Option<char>,
    glued: bool,
    f: impl FnOnce(&mut String),
) -> Option<usize> {
    let before = para.chars().next_back();
    let start = para.len();
    f(para);
    let inner = para.split_off(start);
    let core = inner.trim();
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let stuck_open = inner.len() == inner.trim_start().len() && word(before);
    let stuck_close = inner.len() == inner.trim_end().len() && word(after);
    if core.is_empty() || stuck_open || stuck_close || glued {
        para.push_str(&inner);
        return None;
    }
    let lead = &inner[..inner.len() - inner.trim_start().len()];
    let trail = &inner[lead.len() + core.len()..];
    let _ = write!(para, "{lead}{delim}{core}{delim}");
    let end = para.len();
    para.push_str(trail);
    Some(end)
}

/// HTML whitespace runs → one space (non-breaking spaces stay).
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{c}') {
            space = true;
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    if space {
        out.push(' ');
    }
    out
}

/// The first character `node` writes inline (a line end for breaks).
fn first_char(node: &Node) -> Option<char> {
    match node {
        Node::Text(t) => t.chars().next(),
        Node::Element(e) if e.name == "br" => Some('\n'),
        Node::Element(e) if e.name == "img" => e.attr("alt").and_then(|a| a.chars().next()),
        Node::Element(e) if e.name == "a" && e.attr("href").is_some_and(|h| !h.is_empty()) => {
            // A link writes `[` before its text, or nothing at all when its text is blank.
            (!text_content(&e.children).trim().is_empty()).then_some('[')
        }
        Node::Element(e) => e.children.iter().find_map(first_char),
    }
}

fn link_target(href: &str) -> String {
    href.replace(' ', "%20").replace('(', "%28").replace(')', "%29").replace('<', "%3C").replace('>', "%3E")
}

fn longest_run(s: &str, c: char) -> usize {
    s.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

/// Whether a nested list may follow its item's text without a blank line (`CommonMark` lets only
/// bullet lists and ordered lists starting at 1 interrupt a paragraph).
fn starts_list(block: &str) -> bool {
    block.starts_with("- ") || block == "-" || block.starts_with("1. ")
}

fn prefix_lines(text: &str, prefix: &str, empty: &str) -> String {
    text.lines()
        .map(|l| if l.is_empty() { empty.to_owned() } else { format!("{prefix}{l}") })
        .collect::<Vec<_>>()
        .join("\n")
}
