//! HTML tree → GFM-MIMI markdown or plain text, and markdown → HTML.
//!
//! GFM-MIMI is the one rich text format every MIMI client must read, so Matrix HTML is rewritten
//! into it rather than shipped as HTML alone. Its "No HTML" rule cuts both ways: the writer
//! escapes every `<` as `&lt;` (and every other character markdown would read as syntax), and the
//! renderer shows raw HTML in received markdown as text instead of passing it through. The same
//! writer, without markup, gives the plain-text `body` Matrix needs when only markup arrived.

mod writer;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd, html::push_html};

use super::html::Node;
use writer::Writer;

/// Markdown for `nodes`.
pub fn to_markdown(nodes: &[Node]) -> String {
    Writer::new(true).document(nodes)
}

/// Plain text for `nodes`: the same layout without markup or escapes; mention links give their
/// text only, other links `text (url)`.
pub fn to_plain(nodes: &[Node]) -> String {
    Writer::new(false).document(nodes)
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
            "## Release\n\nHi **all**, see [this](https://e.org/a%28b%29) &lt;b> 2\\*3_x snake_case\n\n\
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
