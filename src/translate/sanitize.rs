//! Re-serialises a parsed HTML tree keeping only Matrix's recommended tags and attributes.
//!
//! Only allow-listed tags and attributes are written and every text and attribute value is
//! escaped again, so the output is safe by construction whatever the input was. The allow-list is
//! the one the Matrix spec recommends (client-server API, `m.room.message` msgtypes): links only
//! to `http(s)`, `ftp`, `mailto`, `magnet` (plus `mimi` on the MIMI side, where mentions are
//! `mimi://` links), colours only as `#rrggbb`, images only from `mxc://` and only towards Matrix
//! (elsewhere their alt text stays), `code` classes only `language-*`. `mx-reply` (the legacy
//! reply fallback), `script`, `style` and similar are dropped with their content; other unknown
//! tags are unwrapped.

use std::fmt::Write as _;

use super::html::{DROP_WITH_CONTENT, Node, VOID, escape};

/// Which side the sanitised HTML is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Matrix `formatted_body`.
    Matrix,
    /// The HTML part of a MIMI message.
    Mimi,
}

#[rustfmt::skip]
const ALLOWED: [&str; 37] = [
    "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub", "li", "b",
    "i", "u", "strong", "em", "s", "code", "hr", "br", "div", "table", "thead", "tbody", "tr", "th", "td", "caption",
    "pre", "span", "details", "summary",
];

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
            let _ = write!(out, " {attr}=\"{}\"", escape(&value));
        }
    }
    out.push('>');
    if VOID.contains(&name) {
        return;
    }
    e.children.iter().for_each(|c| write(c, target, out));
    let _ = write!(out, "</{name}>");
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

#[cfg(test)]
mod tests {
    use super::super::html::parse;
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
        assert_eq!(
            clean("<ul><li>a<li>b</ul><p>x<p>y", Target::Matrix),
            "<ul><li>a</li><li>b</li></ul><p>x</p><p>y</p>"
        );
        assert_eq!(clean("<a href=\"mimi://hs/u/x\">x</a>", Target::Matrix), "<a>x</a>");
        assert_eq!(clean("<a href=\"mimi://hs/u/x\">x</a>", Target::Mimi), "<a href=\"mimi://hs/u/x\">x</a>");
    }
}
