//! Text bodies both ways: Matrix `body`/`formatted_body` ⇄ the MIMI `chooseOne` of markdown,
//! HTML and plain text; legacy reply fallbacks; emote prefixes; small JSON accessors.
//!
//! Going to MIMI, the part order is GFM-MIMI first (mandatory to implement), sanitised HTML,
//! plain text last. Coming back, HTML is preferred (lossless for what came from Matrix), then
//! markdown rendered to HTML, and the plain part, when present, is the `body`.

use serde_json::{Map, Value as Json, json};

use crate::mimi::{Disposition, NestedPart, Part, PartSemantics};

use super::html::{self, Node};
use super::markdown;
use super::sanitize::{Target, sanitize};
use super::uri::{matrix_to_mimi, matrix_to_user, mimi_to_matrix};
use super::{TEXT_HTML, TEXT_MARKDOWN, TEXT_PLAIN, TranslateError};

const HTML_FORMAT: &str = "org.matrix.custom.html";

/// A string field.
pub(super) fn str_field<'a>(obj: &'a Json, field: &str) -> Result<&'a str, TranslateError> {
    match obj.get(field) {
        None | Some(Json::Null) => Err(TranslateError::MissingField(field.to_owned())),
        Some(v) => v.as_str().ok_or(TranslateError::WrongType { field: field.to_owned(), expected: "a string" }),
    }
}

/// An optional string at a path (`None` if absent or not a string).
pub(super) fn str_at<'a>(obj: &'a Json, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(obj, |v, k| v.get(k)).and_then(Json::as_str)
}

/// A single part.
pub(super) fn single(disposition: Disposition, content_type: &str, content: Vec<u8>) -> NestedPart {
    NestedPart {
        disposition,
        language: String::new(),
        part: Part::Single { content_type: content_type.to_owned(), content },
    }
}

/// The emote prefix every part of an emote starts with.
pub(super) fn emote_prefix(localpart: &str) -> String {
    format!("* {localpart} ")
}

/// Removes a legacy reply fallback (`> <@user:hs> quoted` lines and the blank line after) from
/// a reply's `body`. Bodies that merely start with a quote are left alone.
pub(super) fn strip_reply_fallback(body: &str) -> &str {
    if !(body.starts_with("> <") || body.starts_with("> * <")) {
        return body;
    }
    let mut rest = body;
    while rest.starts_with('>') {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// The MIMI body of a Matrix text message (`m.text`, `m.notice`, `m.emote`, unknown msgtypes).
pub(super) fn mimi_text(content: &Json, is_reply: bool, emote: Option<&str>) -> Result<NestedPart, TranslateError> {
    let body = str_field(content, "body")?;
    let body = if is_reply { strip_reply_fallback(body) } else { body };
    let prefix = emote.map(emote_prefix).unwrap_or_default();
    let plain = format!("{prefix}{body}");
    let formatted = (content.get("format").and_then(Json::as_str) == Some(HTML_FORMAT))
        .then(|| content.get("formatted_body").and_then(Json::as_str))
        .flatten();
    let Some(formatted) = formatted else {
        return Ok(single(Disposition::RENDER, TEXT_PLAIN, plain.into_bytes()));
    };
    let mut tree = html::parse(&html::strip_mx_reply(formatted));
    html::rewrite_links(&mut tree, &matrix_to_mimi);
    let md = format!("{}{}", markdown::escape(&prefix, true, None), markdown::to_markdown(&tree));
    let sanitized = format!("{}{}", html::escape(&prefix), sanitize(&tree, Target::Mimi));
    let parts = vec![
        single(Disposition::RENDER, TEXT_MARKDOWN, md.into_bytes()),
        single(Disposition::RENDER, TEXT_HTML, sanitized.into_bytes()),
        single(Disposition::RENDER, TEXT_PLAIN, plain.into_bytes()),
    ];
    Ok(NestedPart {
        disposition: Disposition::RENDER,
        language: String::new(),
        part: Part::Multi { semantics: PartSemantics::ChooseOne, parts },
    })
}

/// A text body for Matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MatrixText {
    /// `body`.
    pub(super) body: String,
    /// `formatted_body` (HTML), if there is formatting.
    pub(super) html: Option<String>,
    /// Mentioned Matrix users, sorted, for `m.mentions.user_ids`.
    pub(super) mentions: Vec<String>,
}

impl MatrixText {
    /// Removes the emote prefix a MIMI emote carries in its text.
    pub(super) fn strip_emote(&mut self, localpart: &str) {
        let prefix = emote_prefix(localpart);
        if let Some(rest) = self.body.strip_prefix(&prefix) {
            self.body = rest.to_owned();
        }
        if let Some(h) = &mut self.html
            && let Some(rest) = h.strip_prefix(&html::escape(&prefix))
        {
            *h = rest.to_owned();
        }
    }

    /// The `m.room.message` content.
    pub(super) fn content(&self, msgtype: &str) -> Map<String, Json> {
        let mut c = Map::new();
        c.insert("msgtype".into(), msgtype.into());
        c.insert("body".into(), self.body.clone().into());
        if let Some(h) = &self.html {
            c.insert("format".into(), HTML_FORMAT.into());
            c.insert("formatted_body".into(), h.clone().into());
        }
        let mentions = if self.mentions.is_empty() { json!({}) } else { json!({ "user_ids": self.mentions }) };
        c.insert("m.mentions".into(), mentions);
        c
    }
}

/// The base media type (`text/plain`), lower-case, of a content type with parameters.
pub(super) fn base_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The Matrix text of a MIMI text part (single or `chooseOne`), or `None` if it is not text.
pub(super) fn matrix_text(part: &NestedPart) -> Option<MatrixText> {
    let singles: Vec<(String, String)> = match &part.part {
        Part::Single { content_type, content } => {
            vec![(base_type(content_type), String::from_utf8_lossy(content).into_owned())]
        }
        Part::Multi { semantics: PartSemantics::ChooseOne, parts } => parts
            .iter()
            .filter_map(|p| match &p.part {
                Part::Single { content_type, content } => {
                    Some((base_type(content_type), String::from_utf8_lossy(content).into_owned()))
                }
                _ => None,
            })
            .collect(),
        _ => return None,
    };
    let find = |t: &str| singles.iter().find(|(ty, _)| ty == t).map(|(_, c)| c.as_str());
    let plain = find("text/plain");
    let (html_source, from_markdown) = match (find("text/html"), find("text/markdown")) {
        (Some(h), _) => (Some(h.to_owned()), false),
        (None, Some(md)) => (Some(markdown::to_html(md)), true),
        (None, None) => (None, false),
    };
    let Some(source) = html_source else {
        return plain.map(|p| MatrixText { body: p.to_owned(), html: None, mentions: Vec::new() });
    };
    let mut tree = html::parse(&source);
    if from_markdown {
        unwrap_single_paragraph(&mut tree);
    }
    html::rewrite_links(&mut tree, &mimi_to_matrix);
    let mut mentions: Vec<String> = html::links(&tree).iter().filter_map(|l| matrix_to_user(l)).collect();
    mentions.sort();
    mentions.dedup();
    let body = plain.map_or_else(|| markdown::to_plain(&tree), str::to_owned);
    let formatted = sanitize(&tree, Target::Matrix);
    let html = (!(from_markdown && formatted == html::escape(&body))).then_some(formatted);
    Some(MatrixText { body, html, mentions })
}

/// `<p>x</p>` → `x`, as Matrix clients send single-paragraph messages.
fn unwrap_single_paragraph(tree: &mut Vec<Node>) {
    let blank = |n: &Node| matches!(n, Node::Text(t) if t.trim().is_empty());
    let mut elements = tree.iter().filter(|n| !blank(n));
    if let (Some(Node::Element(p)), None) = (elements.next(), elements.next())
        && p.name == "p"
    {
        let children = p.children.clone();
        *tree = children;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_fallbacks_are_stripped_only_when_they_are_fallbacks() {
        assert_eq!(strip_reply_fallback("> <@a:hs> hi\n> there\n\nanswer\n> kept"), "answer\n> kept");
        assert_eq!(strip_reply_fallback("> * <@a:hs> waves\n\nok"), "ok");
        assert_eq!(strip_reply_fallback("> a real quote\n\nok"), "> a real quote\n\nok");
    }

    #[test]
    fn markdown_only_text_gets_html_only_when_formatted() {
        let plain = single(Disposition::RENDER, TEXT_MARKDOWN, b"just words".to_vec());
        let t = matrix_text(&plain).unwrap();
        assert_eq!((t.body.as_str(), t.html), ("just words", None));
        let rich = single(Disposition::RENDER, TEXT_MARKDOWN, b"hi [@Al](mimi://hs/u/al) **x**".to_vec());
        let t = matrix_text(&rich).unwrap();
        assert_eq!(t.html.as_deref(), Some("hi <a href=\"https://matrix.to/#/@al:hs\">@Al</a> <strong>x</strong>"));
        assert_eq!(t.body, "hi @Al x");
        assert_eq!(t.mentions, ["@al:hs"]);
    }
}
