//! A small parser for CBOR diagnostic notation (EDN, RFC 8610 Appendix G), enough for the MIMI
//! content example files: `#` and `/ … /` comments (also inside `h'…'`), `h'…'` hex, `'…'` byte
//! strings, `"…"` text, `+` concatenation of strings, integers, `null`/`true`/`false`/`undefined`,
//! arrays, maps (trailing commas tolerated) and tags `N(…)`. Panics (test code) on anything else.

use mimi_bridge::mimi::cbor::{Value, to_vec};

/// Parses one EDN item; nothing but whitespace and comments may follow it.
pub(crate) fn parse(text: &str) -> Value {
    let mut p = Parser { s: text.as_bytes(), pos: 0 };
    let value = p.value();
    p.skip();
    assert!(p.pos == p.s.len(), "EDN: trailing input at byte {}", p.pos);
    value
}

/// The hex of the header comment `# message ID = h'…'` (which may continue on the next `#` lines).
pub(crate) fn header_message_id(text: &str) -> Option<String> {
    let mut lines = text.split_once("message ID = h'")?.1.lines();
    let (mut chunk, mut hex) = (lines.next()?, String::new());
    loop {
        let (part, closed) = chunk.split_once('\'').map_or((chunk, false), |(part, _)| (part, true));
        hex.extend(part.chars().filter(|c| !c.is_whitespace()));
        if closed {
            return Some(hex.to_ascii_lowercase());
        }
        chunk = lines.next()?.trim_start().strip_prefix('#')?;
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> u8 {
        let c = self.peek().unwrap_or_else(|| panic!("EDN: unexpected end of input"));
        self.pos += 1;
        c
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip();
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Skips whitespace and both comment forms.
    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                b'/' => {
                    self.pos += 1;
                    while self.next() != b'/' {}
                }
                _ => break,
            }
        }
    }

    fn value(&mut self) -> Value {
        self.skip();
        let start = self.pos;
        match self.peek() {
            Some(b'[') => {
                self.pos += 1;
                Value::Array(self.seq(b']', Self::value))
            }
            Some(b'{') => {
                self.pos += 1;
                let mut entries = self.seq(b'}', |p| {
                    let key = p.value();
                    assert!(p.eat(b':'), "EDN: expected ':' at byte {}", p.pos);
                    (to_vec(&key), key, p.value())
                });
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                assert!(entries.windows(2).all(|w| w[0].0 != w[1].0), "EDN: duplicate key in the map at byte {start}");
                Value::Map(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
            }
            Some(b'h' | b'\'' | b'"') => {
                let mut value = self.string();
                while self.eat(b'+') {
                    self.skip();
                    value = match (value, self.string()) {
                        (Value::Bytes(mut a), Value::Bytes(b)) => {
                            a.extend(b);
                            Value::Bytes(a)
                        }
                        (Value::Text(a), Value::Text(b)) => Value::Text(a + b.as_str()),
                        _ => panic!("EDN: '+' joins strings of different kinds at byte {start}"),
                    };
                }
                value
            }
            Some(b'-' | b'0'..=b'9') => {
                let negative = self.peek() == Some(b'-');
                if negative {
                    self.pos += 1;
                }
                let digits = self.take_while(|c| c.is_ascii_digit());
                let n: u64 = digits.parse().unwrap_or_else(|_| panic!("EDN: bad integer at byte {start}"));
                if !negative && self.peek() == Some(b'(') {
                    self.pos += 1;
                    let inner = self.value();
                    assert!(self.eat(b')'), "EDN: expected ')' at byte {}", self.pos);
                    return Value::Tag(n, Box::new(inner));
                }
                if negative {
                    assert!(n > 0, "EDN: -0 at byte {start}");
                    Value::Negative(n - 1)
                } else {
                    Value::Unsigned(n)
                }
            }
            Some(c) if c.is_ascii_alphabetic() => match self.take_while(|c| c.is_ascii_alphabetic()).as_str() {
                "false" => Value::Simple(20),
                "true" => Value::Simple(21),
                "null" => Value::Simple(22),
                "undefined" => Value::Simple(23),
                other => panic!("EDN: unknown word {other:?} at byte {start}"),
            },
            other => panic!("EDN: unexpected {:?} at byte {start}", other.map(char::from)),
        }
    }

    /// Comma-separated items up to `close` (a trailing comma is tolerated).
    fn seq<T>(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(item(self));
            if !self.eat(b',') {
                assert!(self.eat(close), "EDN: expected ',' or '{}' at byte {}", char::from(close), self.pos);
                break;
            }
        }
        items
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    /// `h'…'`, `'…'` (bytes) or `"…"` (text).
    fn string(&mut self) -> Value {
        let start = self.pos;
        match self.next() {
            b'h' => {
                assert!(self.next() == b'\'', "EDN: expected h'…' at byte {start}");
                let mut digits = Vec::new();
                loop {
                    self.skip();
                    match self.next() {
                        b'\'' => break,
                        c if c.is_ascii_hexdigit() => digits.push(c),
                        c => panic!("EDN: {:?} in hex string at byte {}", char::from(c), self.pos - 1),
                    }
                }
                assert!(digits.len() % 2 == 0, "EDN: odd number of hex digits at byte {start}");
                let hex = String::from_utf8(digits).unwrap();
                Value::Bytes(hex::decode(hex).unwrap())
            }
            quote @ (b'\'' | b'"') => {
                let mut out = String::new();
                let mut raw = Vec::new();
                loop {
                    match self.next() {
                        c if c == quote => break,
                        b'\\' => {
                            out.push_str(&String::from_utf8(std::mem::take(&mut raw)).expect("EDN: invalid UTF-8"));
                            out.push(self.escape());
                        }
                        c => raw.push(c),
                    }
                }
                out.push_str(&String::from_utf8(raw).expect("EDN: invalid UTF-8"));
                if quote == b'"' { Value::Text(out) } else { Value::Bytes(out.into_bytes()) }
            }
            c => panic!("EDN: expected a string at byte {start}, found {:?}", char::from(c)),
        }
    }

    /// The character after a backslash (JSON escapes plus `\'`).
    fn escape(&mut self) -> char {
        match self.next() {
            c @ (b'"' | b'\'' | b'\\' | b'/') => char::from(c),
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4();
                if (0xd800..0xdc00).contains(&unit) {
                    assert!(
                        self.next() == b'\\' && self.next() == b'u',
                        "EDN: lone high surrogate at byte {}",
                        self.pos
                    );
                    let low = self.hex4();
                    assert!((0xdc00..0xe000).contains(&low), "EDN: bad low surrogate at byte {}", self.pos);
                    char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)).unwrap()
                } else {
                    char::from_u32(unit).unwrap_or_else(|| panic!("EDN: lone surrogate at byte {}", self.pos))
                }
            }
            c => panic!("EDN: unknown escape \\{} at byte {}", char::from(c), self.pos - 1),
        }
    }

    fn hex4(&mut self) -> u32 {
        let digits: String = (0..4).map(|_| char::from(self.next())).collect();
        u32::from_str_radix(&digits, 16).unwrap_or_else(|_| panic!("EDN: bad \\u escape at byte {}", self.pos))
    }
}

#[test]
fn edn_parser_handles_the_notation_used_by_the_vectors() {
    let v = parse(
        "# head\n[ h'01 02 # c\n 0a' , 'a\\'b' + 'c', \"\\u00e9\\ud83e\\udd73\\\\\", -1, -25, 24, null, true, false,\n\
         / block / { \"zz\": 1, -1: 2, 2: [], }, 1001({1: 2}), ]",
    );
    let expected = Value::Array(vec![
        Value::Bytes(vec![1, 2, 10]),
        Value::Bytes(b"a'bc".to_vec()),
        Value::Text("é🥳\\".into()),
        Value::Negative(0),
        Value::Negative(24),
        Value::Unsigned(24),
        Value::Simple(22),
        Value::Simple(21),
        Value::Simple(20),
        Value::Map(vec![
            (Value::Unsigned(2), Value::Array(vec![])),
            (Value::Negative(0), Value::Unsigned(2)),
            (Value::Text("zz".into()), Value::Unsigned(1)),
        ]),
        Value::Tag(1001, Box::new(Value::Map(vec![(Value::Unsigned(1), Value::Unsigned(2))]))),
    ]);
    assert_eq!(v, expected);
    let header = "# X\n# message ID = h'01AB cd\n#                ef01'\n# timestamp\n[]";
    assert_eq!(header_message_id(header).as_deref(), Some("01abcdef01"));
    assert_eq!(header_message_id("[]"), None);
}
