//! Properties of the text pipeline on generated input: escaped text reads back literally,
//! sanitising is idempotent and never lets a dangerous construct through, and HTML → markdown →
//! HTML keeps the words.

use proptest::prelude::*;

use super::html::{parse, text_content};
use super::markdown::{escape, to_html, to_markdown};
use super::sanitize::{Target, sanitize};

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The characters, without whitespace (block boundaries add some in markdown, not in HTML).
fn ink(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

const SOUP: [&str; 44] = [
    "<p>",
    "</p>",
    "<b>",
    "</b>",
    "<em>",
    "</em>",
    "<a href=\"https://e.org/x\">",
    "<a href=\"javascript:x\">",
    "</a>",
    "<ul>",
    "<ol>",
    "<li>",
    "</ul>",
    "<blockquote>",
    "</blockquote>",
    "<script>bad</script>",
    "<mx-reply>old</mx-reply>",
    "<span onclick=\"x\">",
    "<img src=\"mxc://a/b\" alt=\"pic\">",
    "<br>",
    "<code>",
    "</code>",
    "<h2>",
    "</h2>",
    "word",
    "more words",
    " ",
    "&amp;",
    "a<b",
    "x_y*z",
    "<pre><code class=\"language-rust\">",
    "</pre>",
    "<table><tr><td>",
    "<td>",
    "<del>",
    "</del>",
    "<ol start=\"3\">",
    "1. x",
    "# h",
    "- y",
    "> q",
    "`t``",
    "\\",
    "&lt;b&gt;",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn escaped_text_reads_back_literally(text in "[ -~éü❤]{0,40}") {
        let text = words(&text);
        let rendered = to_html(&escape(&text, true, None));
        prop_assert_eq!(words(&text_content(&parse(&rendered))), text);
    }

    #[test]
    fn sanitising_is_idempotent_and_safe(pieces in prop::collection::vec(prop::sample::select(&SOUP[..]), 0..24)) {
        let input = pieces.concat();
        for target in [Target::Matrix, Target::Mimi] {
            let once = sanitize(&parse(&input), target);
            prop_assert_eq!(&sanitize(&parse(&once), target), &once);
            // Only Matrix-bound HTML keeps (mxc://) images.
            let rest = once.replace("<img src=\"mxc://a/b\" alt=\"pic\">", "");
            prop_assert!(target == Target::Matrix || rest == once, "{}", once);
            for bad in ["<script", "mx-reply", "onclick", "javascript", "<img"] {
                prop_assert!(!rest.contains(bad), "{} in {}", bad, once);
            }
        }
    }

    #[test]
    fn markdown_keeps_the_words(pieces in prop::collection::vec(prop::sample::select(&SOUP[..]), 0..24)) {
        let tree = parse(&pieces.concat());
        let expected = ink(&text_content(&parse(&sanitize(&tree, Target::Mimi))));
        let markdown = to_markdown(&tree);
        let back = ink(&text_content(&parse(&to_html(&markdown))));
        prop_assert_eq!(back, expected, "markdown {:?}", markdown);
    }
}
