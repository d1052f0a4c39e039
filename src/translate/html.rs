//! A small, forgiving HTML parser and an allow-list serialiser for Matrix's HTML subset.
//!
//! `formatted_body` is attacker-controlled and Matrix clients render only a short list of tags,
//! so instead of a full HTML5 parser the bridge parses into a tiny tree and re-serialises from
//! scratch: only allow-listed tags and attributes are written, every text and attribute value is
//! escaped again, so the output is safe by construction whatever the input. The same tree feeds
//! the markdown writer and mention rewriting, so all three views of one message agree.
//!
//! The allow-list is the one the Matrix spec recommends (client-server API, `m.room.message`
//! msgtypes): links only to `http(s)`, `ftp`, `mailto`, `magnet` (plus `mimi` on the MIMI side,
//! where mentions are `mimi://` links), images only from `mxc://` and only towards Matrix
//! (elsewhere their alt text stays), `code` classes only `language-*`, nesting at most 100 deep.
//! `mx-reply` (legacy reply fallback), `script`, `style` and similar are dropped with content.

/// A parsed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Text, entities decoded.
    Text(String),
    /// An element.
    Element(Element),
}

/// An element with lower-case name and attribute names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Attributes in source order, values decoded.
    pub attrs: Vec<(String, String)>,
    /// Children.
    pub children: Vec<Node>,
}

impl Element {
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Which side the sanitised HTML is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Matrix `formatted_body`.
    Matrix,
    /// The HTML part of a MIMI message.
    Mimi,
}

const VOID: [&str; 14] =
    ["br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "base", "source", "embed", "param", "track"];
const DROP_WITH_CONTENT: [&str; 11] =
    ["mx-reply", "script", "style", "textarea", "title", "head", "iframe", "object", "template", "svg", "math"];
const ALLOWED: [&str; 37] = [
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub", "li", "b",
    "i", "u", "strong", "em", "s", "code", "hr", "br", "div", "table", "thead", "tbody", "tr", "th", "td", "caption",
    "pre", "span", "details", "summary",
];
const BLOCK: [&str; 14] =
    ["p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "pre", "table", "hr"];
const MAX_DEPTH: usize = 100;

/// Parses `input` into a forest. Never fails: unknown constructs become text or are skipped.
pub fn parse(input: &str) -> Vec<Node> {
    let mut stack = vec![Element { name: String::new(), attrs: Vec::new(), children: Vec::new() }];
    let mut text = String::new();
    let mut rest = input;
    // Past the last `>` no tag can close: keeps unterminated `<` runs linear.
    let tags_end = input.rfind('>').map_or(0, |i| i + 1);
    while let Some(i) = rest.find('<').filter(|&i| input.len() - rest.len() + i < tags_end) {
        text.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.find("-->").map_or("", |j| &r[j + 3..]);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            rest = rest.find('>').map_or("", |j| &rest[j + 1..]);
            continue;
        }
        let Some((tag, after)) = tag(rest) else {
            text.push('<');
            rest = &rest[1..];
            continue;
        };
        flush_text(&mut stack, &mut text);
        rest = after;
        if tag.end {
            close(&mut stack, &tag.name);
        } else if DROP_WITH_CONTENT.contains(&tag.name.as_str()) && !tag.self_closing {
            rest = skip_element(rest, &tag.name);
        } else {
            open(&mut stack, tag);
        }
    }
    text.push_str(rest);
    flush_text(&mut stack, &mut text);
    while stack.len() > 1 {
        pop(&mut stack);
    }
    stack.pop().map(|root| root.children).unwrap_or_default()
}

struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
    end: bool,
    self_closing: bool,
}

/// Parses the tag at the start of `s` (which starts with `<`); `None` if it is not one.
fn tag(s: &str) -> Option<(Tag, &str)> {
    let (end, body) = match s[1..].strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, &s[1..]),
    };
    if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name_len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(body.len());
    let name = body[..name_len].to_ascii_lowercase();
    let mut r = &body[name_len..];
    let mut attrs = Vec::new();
    loop {
        r = r.trim_start();
        if let Some(after) = r.strip_prefix('>') {
            return Some((Tag { name, attrs, end, self_closing: false }, after));
        }
        if let Some(after) = r.strip_prefix("/>") {
            return Some((Tag { name, attrs, end, self_closing: true }, after));
        }
        let n = r.find(|c: char| c.is_whitespace() || "=>/".contains(c)).unwrap_or(r.len());
        if r.is_empty() {
            return None;
        }
        let attr = r[..n].to_ascii_lowercase();
        r = r[n.max(1)..].trim_start();
        let mut value = String::new();
        if n > 0
            && let Some(v) = r.strip_prefix('=')
        {
            let v = v.trim_start();
            let (raw, after) = match v.chars().next() {
                Some(q @ ('"' | '\'')) => v[1..].split_once(q)?,
                _ => v.split_at(v.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(v.len())),
            };
            value = decode_entities(raw);
            r = after;
        }
        if n > 0 && !attrs.iter().any(|(a, _)| *a == attr) {
            attrs.push((attr, value));
        }
    }
}

/// Skips to after `</name>` (case-insensitively), or to the end.
fn skip_element<'a>(rest: &'a str, name: &str) -> &'a str {
    let close = format!("</{name}");
    let lower = rest.to_ascii_lowercase();
    match lower.find(&close) {
        Some(i) => rest[i..].find('>').map_or("", |j| &rest[i + j + 1..]),
        None => "",
    }
}

fn flush_text(stack: &mut [Element], text: &mut String) {
    if !text.is_empty()
        && let Some(top) = stack.last_mut()
    {
        top.children.push(Node::Text(decode_entities(text)));
        text.clear();
    }
}

fn open(stack: &mut Vec<Element>, tag: Tag) {
    let name = tag.name.as_str();
    let top = stack.last().map_or("", |e| e.name.as_str());
    if top == "p" && (BLOCK.contains(&name) || name == "li") {
        pop(stack);
    }
    let closes: &[&str] = match name {
        "li" => &["ul", "ol"],
        "tr" => &["table"],
        "td" | "th" => &["tr", "table"],
        _ => &[],
    };
    if !closes.is_empty() {
        let siblings: &[&str] = if name == "li" { &["li"] } else if name == "tr" { &["tr"] } else { &["td", "th"] };
        let scope = stack.iter().rposition(|e| closes.contains(&e.name.as_str())).unwrap_or(0);
        if let Some(i) = stack.iter().rposition(|e| siblings.contains(&e.name.as_str()))
            && i > scope
        {
            while stack.len() > i {
                pop(stack);
            }
        }
    }
    let element = Element { name: tag.name, attrs: tag.attrs, children: Vec::new() };
    if VOID.contains(&element.name.as_str()) || tag.self_closing || stack.len() > MAX_DEPTH {
        if let Some(top) = stack.last_mut() {
            top.children.push(Node::Element(element));
        }
    } else {
        stack.push(element);
    }
}

fn close(stack: &mut Vec<Element>, name: &str) {
    if let Some(i) = stack.iter().rposition(|e| e.name == name)
        && i > 0
    {
        while stack.len() > i {
            pop(stack);
        }
    }
}

fn pop(stack: &mut Vec<Element>) {
    if let Some(e) = stack.pop()
        && let Some(parent) = stack.last_mut()
    {
        parent.children.push(Node::Element(e));
    }
}

/// Decodes the character references Matrix clients produce: the five XML ones, `&nbsp;` and
/// numeric ones. Anything else stays as written.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest[1..].find(';').filter(|&j| j <= 10).and_then(|j| {
            let name = &rest[1..=j];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name.strip_prefix('#').and_then(|n| {
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    };
                    code.and_then(char::from_u32).filter(|&c| c != '\0')
                }),
            };
            c.map(|c| (c, j + 2))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML (`&`, `<`, `>`, and `"` for attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Serialises `nodes`, keeping only the allow-list.
pub fn sanitize(nodes: &[Node], target: Target) -> String {
    let mut out = String::new();
    for n in nodes {
        write(n, target, &mut out);
    }
    out
}

fn write(node: &Node, target: Target, out: &mut String) {
    let e = match node {
        Node::Text(t) => return out.push_str(&escape(t)),
        Node::Element(e) => e,
    };
    let name = e.name.as_str();
    if DROP_WITH_CONTENT.contains(&name) {
        return;
    }
    if name == "img" {
        let src = e.attr("src").unwrap_or("");
        if target == Target::Mimi || !src.starts_with("mxc://") {
            out.push_str(&escape(e.attr("alt").or(e.attr("title")).unwrap_or("")));
            return;
        }
    } else if !ALLOWED.contains(&name) {
        return e.children.iter().for_each(|c| write(c, target, out));
    }
    out.push('<');
    out.push_str(name);
    for (attr, value) in &e.attrs {
        if let Some(value) = allowed_attr(name, attr, value, target) {
            out.push_str(&format!(" {attr}=\"{}\"", escape(&value)));
        }
    }
    out.push('>');
    if VOID.contains(&name) {
        return;
    }
    e.children.iter().for_each(|c| write(c, target, out));
    out.push_str(&format!("</{name}>"));
}

fn allowed_attr(tag: &str, attr: &str, value: &str, target: Target) -> Option<String> {
    let color = |v: &str| v.len() == 7 && v.starts_with('#') && v[1..].bytes().all(|b| b.is_ascii_hexdigit());
    let ok = match (tag, attr) {
        ("font" | "span", "data-mx-bg-color" | "data-mx-color") | ("font", "color") => color(value),
        ("span", "data-mx-spoiler") | ("span" | "div", "data-mx-maths") | ("img", "alt" | "title") => true,
        ("img", "width" | "height") | ("ol", "start") => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        ("img", "src") => value.starts_with("mxc://"),
        ("a", "target") => value == "_blank",
        ("a", "href") => {
            let scheme = value.split_once(':').map_or("", |(s, _)| s).to_ascii_lowercase();
            ["https", "http", "ftp", "mailto", "magnet"].contains(&scheme.as_str())
                || (target == Target::Mimi && scheme == "mimi")
        }
        ("code", "class") => {
            let classes: Vec<&str> = value.split_whitespace().filter(|c| c.starts_with("language-")).collect();
            return (!classes.is_empty()).then(|| classes.join(" "));
        }
        _ => false,
    };
    ok.then(|| value.to_owned())
}

/// Rewrites every `<a href>` for which `f` returns a new target.
pub fn rewrite_links(nodes: &mut [Node], f: &dyn Fn(&str) -> Option<String>) {
    for node in nodes {
        if let Node::Element(e) = node {
            if e.name == "a"
                && let Some((_, href)) = e.attrs.iter_mut().find(|(n, _)| n == "href")
                && let Some(new) = f(href)
            {
                *href = new;
            }
            rewrite_links(&mut e.children, f);
        }
    }
}

/// Every `<a href>` target, in document order.
pub fn links(nodes: &[Node]) -> Vec<String> {
    let mut out = Vec::new();
    for node in nodes {
        if let Node::Element(e) = node {
            if e.name == "a"
                && let Some(href) = e.attr("href")
            {
                out.push(href.to_owned());
            }
            out.extend(links(&e.children));
        }
    }
    out
}

/// Whether `name` starts a block (for the markdown and plain-text writers).
pub fn is_block(name: &str) -> bool {
    BLOCK.contains(&name) || ["li", "details", "summary", "caption", "thead", "tbody", "tr"].contains(&name)
}

/// Removes a legacy reply fallback (`<mx-reply>…</mx-reply>`) from a formatted body.
pub fn strip_mx_reply(html: &str) -> String {
    match (html.find("<mx-reply>"), html.rfind("</mx-reply>")) {
        (Some(start), Some(end)) if end > start => format!("{}{}", &html[..start], &html[end + "</mx-reply>".len()..]),
        _ => html.to_owned(),
    }
}

/// The text content of `nodes` (no markup, whitespace as written).
pub fn text_content(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Element(e) if e.name == "br" => out.push('\n'),
            Node::Element(e) => out.push_str(&text_content(&e.children)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str, target: Target) -> String {
        sanitize(&parse(html), target)
    }

    #[test]
    fn sanitising_keeps_the_allow_list_and_escapes_everything_else() {
        let html = "<p onclick=\"x()\">Hi <b>there</b><script>alert(1)</script> &amp; <x-y>bye</x-y></p>\
                    <a href=\"javascript:alert(1)\">j</a><a href='https://e.org/?a=1&amp;b=\"2\"'>ok</a>\
                    <img src=\"mxc://hs/abc\" alt=\"cat\"><code class=\"language-rust evil\">fn</code>";
        assert_eq!(
            clean(html, Target::Matrix),
            "<p>Hi <b>there</b> &amp; bye</p><a>j</a><a href=\"https://e.org/?a=1&amp;b=&quot;2&quot;\">ok</a>\
             <img src=\"mxc://hs/abc\" alt=\"cat\"><code class=\"language-rust\">fn</code>"
        );
        assert!(clean(html, Target::Mimi).contains("ok</a>cat<code"));
        assert_eq!(clean("a < b <3 <!-- c --> d", Target::Matrix), "a &lt; b &lt;3  d");
        assert_eq!(clean("<mx-reply><blockquote>old</blockquote></mx-reply>new", Target::Matrix), "new");
        assert_eq!(clean("<ul><li>a<li>b</ul><p>x<p>y", Target::Matrix), "<ul><li>a</li><li>b</li></ul><p>x</p><p>y</p>");
        assert_eq!(clean("<a href=\"mimi://hs/u/x\">x</a>", Target::Matrix), "<a>x</a>");
        assert_eq!(clean("<a href=\"mimi://hs/u/x\">x</a>", Target::Mimi), "<a href=\"mimi://hs/u/x\">x</a>");
    }

    #[test]
    fn deep_nesting_is_bounded_and_entities_decode() {
        let deep = "<span>".repeat(500) + "x";
        assert_eq!(text_content(&parse(&deep)), "x");
        assert_eq!(decode_entities("&lt;&#65;&#x42;&bogus;&amp"), "<AB&bogus;&amp");
        assert_eq!(strip_mx_reply("<mx-reply>q</mx-reply>answer"), "answer");
    }
}
