//! A small, forgiving HTML parser for Matrix's HTML subset, and the tree helpers built on it.
//!
//! `formatted_body` is attacker-controlled and Matrix clients render only a short list of tags,
//! so instead of a full HTML5 parser the bridge parses into a tiny tree that [`sanitize`]
//! re-serialises from scratch. The same tree feeds the markdown writer and mention rewriting, so
//! the views of one message agree. The parser never fails: stray `<` are text, unknown
//! constructs are skipped, unclosed elements are closed, nesting stops growing at 100 levels.
//!
//! [`sanitize`]: super::sanitize::sanitize

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

pub(super) const VOID: [&str; 14] =
    ["br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "base", "source", "embed", "param", "track"];
pub(super) const DROP_WITH_CONTENT: [&str; 11] =
    ["mx-reply", "script", "style", "textarea", "title", "head", "iframe", "object", "template", "svg", "math"];
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

/// Parses the tag at the start of `input` (which starts with `<`); `None` if it is not one.
fn tag(input: &str) -> Option<(Tag, &str)> {
    let (end, body) = match input[1..].strip_prefix('/') {
        Some(body) => (true, body),
        None => (false, &input[1..]),
    };
    if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name_len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(body.len());
    let name = body[..name_len].to_ascii_lowercase();
    let mut rest = &body[name_len..];
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('>') {
            return Some((Tag { name, attrs, end, self_closing: false }, after));
        }
        if let Some(after) = rest.strip_prefix("/>") {
            return Some((Tag { name, attrs, end, self_closing: true }, after));
        }
        if rest.is_empty() {
            return None;
        }
        // Attribute names end at whitespace, `=`, `>` or `/`; a stray `=` or `/` is skipped.
        let name_end = rest.find(|c: char| c.is_whitespace() || "=>/".contains(c)).unwrap_or(rest.len());
        let attr = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end.max(1)..].trim_start();
        let mut value = String::new();
        if name_end > 0
            && let Some(after_eq) = rest.strip_prefix('=')
        {
            let quoted = after_eq.trim_start();
            let (raw, after) = match quoted.chars().next() {
                Some(quote @ ('"' | '\'')) => quoted[1..].split_once(quote)?,
                _ => quoted.split_at(quoted.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(quoted.len())),
            };
            value = decode_entities(raw);
            rest = after;
        }
        if name_end > 0 && !attrs.iter().any(|(a, _)| *a == attr) {
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
    // The implied end tags of HTML's tree construction that Matrix HTML relies on.
    if BLOCK.contains(&name) || name == "li" {
        close_open(stack, &["p"], &["table", "td", "th", "caption", "button"]);
    }
    match name {
        "a" => close_open(stack, &["a"], &[]),
        "li" => close_open(stack, &["li"], &["ul", "ol"]),
        "tr" => close_open(stack, &["tr"], &["table"]),
        "td" | "th" => close_open(stack, &["td", "th"], &["tr", "table"]),
        _ => {}
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

/// Closes the innermost open element named in `names`, unless one of `scope` is open inside it.
fn close_open(stack: &mut Vec<Element>, names: &[&str], scope: &[&str]) {
    if let Some(i) = stack.iter().rposition(|e| names.contains(&e.name.as_str()))
        && i > 0
        && !stack[i + 1..].iter().any(|e| scope.contains(&e.name.as_str()))
    {
        while stack.len() > i {
            pop(stack);
        }
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
        let (c, len) = decoded.unwrap_or(('&', 1));
        out.push(c);
        rest = &rest[len..];
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
            Node::Element(e) if e.name == "img" => out.push_str(e.attr("alt").unwrap_or("")),
            Node::Element(e) => out.push_str(&text_content(&e.children)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_bounded_and_entities_decode() {
        let deep = "<span>".repeat(500) + "x";
        assert_eq!(text_content(&parse(&deep)), "x");
        assert_eq!(decode_entities("&lt;&#65;&#x42;&bogus;&amp"), "<AB&bogus;&amp");
        assert_eq!(strip_mx_reply("<mx-reply>q</mx-reply>answer"), "answer");
    }
}
