//! HTML tree → GFM-MIMI markdown or plain text, and markdown → HTML.
//!
//! GFM-MIMI is the one rich text format every MIMI client must read, so Matrix HTML is rewritten
//! into it rather than shipped as HTML alone. Its "No HTML" rule cuts both ways: the writer
//! escapes every `<` as `&lt;` (and every other character markdown would read as syntax), and the
//! renderer shows raw HTML in received markdown as text instead of passing it through. The same
//! writer, without markup, gives the plain-text `body` Matrix needs when only markup arrived.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html::push_html};

use super::html::{Element, Node, is_block, text_content};

/// Markdown for `nodes`.
pub fn to_markdown(nodes: &[Node]) -> String {
    Writer { md: true }.document(nodes)
}

/// Plain text for `nodes`: the same layout without markup or escapes; mention links give their
/// text only, other links `text (url)`.
pub fn to_plain(nodes: &[Node]) -> String {
    Writer { md: false }.document(nodes)
}

/// Renders markdown (GFM tables, strikethrough, task lists) to HTML, raw HTML shown as text.
pub fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
        Event::TaskListMarker(done) => Event::Text((if done { "[x] " } else { "[ ] " }).into()),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 2);
    push_html(&mut out, events);
    out
}

/// Escapes `text` so that markdown reads it literally (`line_start`: it begins a line).
pub fn escape(text: &str, line_start: bool, prev: Option<char>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let digits = if line_start { chars.iter().take_while(|c| c.is_ascii_digit()).count() } else { 0 };
    for (i, &c) in chars.iter().enumerate() {
        let before = if i == 0 { prev } else { Some(chars[i - 1]) };
        let after = chars.get(i + 1).copied();
        let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        match c {
            '<' => out.push_str("&lt;"),
            '\\' | '`' | '*' | '[' | ']' | '~' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '_' if !(word(before) && word(after)) => out.push_str("\\_"),
            '&' if entity_like(&chars[i + 1..]) => out.push_str("\\&"),
            '#' | '>' | '-' | '+' | '=' if i == 0 && line_start => {
                out.push('\\');
                out.push(c);
            }
            '.' | ')' if digits > 0 && i == digits => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn entity_like(rest: &[char]) -> bool {
    let n = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '#').count();
    n > 0 && rest.get(n) == Some(&';')
}

struct Writer {
    md: bool,
}

impl Writer {
    fn document(&self, nodes: &[Node]) -> String {
        let mut blocks = Vec::new();
        self.blocks(nodes, &mut blocks);
        blocks.join("\n\n")
    }

    fn blocks(&self, nodes: &[Node], out: &mut Vec<String>) {
        let mut para = String::new();
        for node in nodes {
            match node {
                Node::Element(e) if is_block(&e.name) => {
                    self.flush(&mut para, out);
                    self.block(e, out);
                }
                _ => self.inline(node, &mut para),
            }
        }
        self.flush(&mut para, out);
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
            "li" => self.list_items(&[e], false, 1, out),
            "pre" => self.code_block(e, out),
            "hr" => out.push("---".to_owned()),
            "table" => self.table(e, out),
            _ => self.blocks(&e.children, out),
        }
    }

    /// Inline content on one line (headings, table cells).
    fn line(&self, nodes: &[Node]) -> String {
        let mut s = String::new();
        nodes.iter().for_each(|n| self.inline(n, &mut s));
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn list(&self, e: &Element, out: &mut Vec<String>) {
        let ordered = e.name == "ol";
        let start = e.attr("start").and_then(|s| s.parse().ok()).unwrap_or(1u32);
        let items: Vec<&Element> = e
            .children
            .iter()
            .filter_map(|c| match c {
                Node::Element(li) => Some(li),
                Node::Text(_) => None,
            })
            .collect();
        self.list_items(&items, ordered, start, out);
    }

    fn list_items(&self, items: &[&Element], ordered: bool, start: u32, out: &mut Vec<String>) {
        let mut lines = Vec::new();
        for (n, item) in (start..).zip(items) {
            let marker = if ordered { format!("{n}. ") } else { "- ".to_owned() };
            let mut blocks = Vec::new();
            self.blocks(&item.children, &mut blocks);
            let mut body = String::new();
            for (i, b) in blocks.iter().enumerate() {
                if i > 0 {
                    body.push_str(if starts_list(b) { "\n" } else { "\n\n" });
                }
                body.push_str(b);
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
            return out.push(code.to_owned());
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
        let children = |para: &mut String| e.children.iter().for_each(|c| self.inline(c, para));
        match e.name.as_str() {
            "br" => {
                let trimmed = para.trim_end_matches(' ').len();
                para.truncate(trimmed);
                para.push('\n');
            }
            "strong" | "b" if self.md => wrap(para, "**", children),
            "em" | "i" if self.md => wrap(para, "*", children),
            "del" | "s" | "strike" if self.md => wrap(para, "~~", children),
            "code" => {
                let code = collapse(&text_content(&e.children));
                if self.md {
                    let fence = "`".repeat(longest_run(&code, '`') + 1);
                    let pad = if code.starts_with('`') || code.ends_with('`') { " " } else { "" };
                    para.push_str(&format!("{fence}{pad}{code}{pad}{fence}"));
                } else {
                    self.text(&code, para);
                }
            }
            "a" => self.link(e, para),
            "img" => self.text(e.attr("alt").unwrap_or(""), para),
            _ => children(para),
        }
    }

    fn link(&self, e: &Element, para: &mut String) {
        let href = e.attr("href").unwrap_or("");
        let start = para.len();
        e.children.iter().for_each(|c| self.inline(c, para));
        if href.is_empty() {
            return;
        }
        let text = para.split_off(start);
        let mention = href.starts_with("mimi://") || href.starts_with("https://matrix.to/#/@");
        match (self.md, text.trim().is_empty()) {
            (true, true) => para.push_str(&format!("[{}]({})", escape(href, false, None), link_target(href))),
            (true, false) => para.push_str(&format!("[{text}]({})", link_target(href))),
            (false, true) => self.text(href, para),
            (false, false) if mention || text.trim() == href => para.push_str(&text),
            (false, false) => para.push_str(&format!("{text} ({href})")),
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

/// Puts `delim` around what `f` writes, moving surrounding whitespace outside the delimiters
/// (CommonMark does not open or close emphasis next to whitespace).
fn wrap(para: &mut String, delim: &str, f: impl FnOnce(&mut String)) {
    let start = para.len();
    f(para);
    let inner = para.split_off(start);
    let core = inner.trim();
    if core.is_empty() {
        return para.push_str(&inner);
    }
    let lead = &inner[..inner.len() - inner.trim_start().len()];
    let trail = &inner[lead.len() + core.len()..];
    para.push_str(&format!("{lead}{delim}{core}{delim}{trail}"));
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

fn link_target(href: &str) -> String {
    href.replace(' ', "%20").replace('(', "%28").replace(')', "%29").replace('<', "%3C").replace('>', "%3E")
}

fn longest_run(s: &str, c: char) -> usize {
    s.split(|x| x != c).map(str::len).max().unwrap_or(0)
}

/// Whether a nested list may follow its item's text without a blank line (CommonMark lets only
/// bullet lists and ordered lists starting at 1 interrupt a paragraph).
fn starts_list(block: &str) -> bool {
    block.starts_with("- ") || block == "-" || block.starts_with("1. ")
}

fn prefix_lines(text: &str, prefix: &str, empty: &str) -> String {
    text.lines().map(|l| if l.is_empty() { empty.to_owned() } else { format!("{prefix}{l}") }).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::html::parse;
    use super::*;

    #[test]
    fn html_becomes_gfm_mimi() {
        let html = "<h2>Re<i>lease</i></h2><p>Hi <strong> all</strong>, see <a href=\"https://e.org/a(b)\">this</a> \
                    &lt;b&gt; 2*3_x snake_case</p><ul><li>one</li><li>two<ol start=\"3\"><li>three</li></ol></li></ul>\
                    <blockquote><p>quote<br>more</p></blockquote><pre><code class=\"language-rust\">fn x() {}\n</code></pre>\
                    <p>1. not a list <code>a`b</code> <del>old</del></p>";
        assert_eq!(
            to_markdown(&parse(html)),
            "## Re*lease*\n\nHi **all**, see [this](https://e.org/a%28b%29) &lt;b> 2\\*3_x snake_case\n\n\
             - one\n- two\n\n  3. three\n\n> quote\\\n> more\n\n```rust\nfn x() {}\n```\n\n\
             1\\. not a list ``a`b`` ~~old~~"
        );
        assert_eq!(
            to_plain(&parse(html)),
            "Release\n\nHi all, see this (https://e.org/a(b)) <b> 2*3_x snake_case\n\n- one\n- two\n\n  3. three\n\n\
             > quote\n> more\n\nfn x() {}\n\n1. not a list a`b old"
        );
    }

    #[test]
    fn tables_and_markdown_rendering_without_raw_html() {
        let html = "<table><tr><th>a</th><th>b|c</th></tr><tr><td>1</td></tr></table>";
        assert_eq!(to_markdown(&parse(html)), "| a | b\\|c |\n| --- | --- |\n| 1 |  |");
        let rendered = to_html("Hi <b>x</b> **y**\n\n<div>raw</div>\n\n- [x] done");
        assert!(rendered.contains("&lt;b&gt;x&lt;/b&gt; <strong>y</strong>"), "{rendered}");
        assert!(rendered.contains("&lt;div&gt;raw&lt;/div&gt;"), "{rendered}");
        assert!(rendered.contains("[x] done"), "{rendered}");
        let md = to_markdown(&parse(&to_html("a *b* `c` [d](https://e.org)")));
        assert_eq!(md, "a *b* `c` [d](https://e.org)");
    }
}
