//! Text from the other side of a connection, made safe for a log line or an error
//! message.
//!
//! A response's headers and body are written by the server, or by anything in between:
//! a proxy that echoes the request's headers, a load balancer's error page, a function's
//! own error message. Written verbatim into a log, such text can be as long as the
//! response (filling the log), and its control characters can forge log lines (`\n`),
//! repaint or erase a terminal (`ESC [`), or reorder what a reader sees (bidirectional
//! overrides). [`Untrusted`] writes it capped and escaped.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// The most characters of untrusted text written, escapes included; the rest is replaced
/// by `…[N more bytes]`.
///
/// 1024 keeps every message Lambda itself writes whole: the longest, a validation error
/// that quotes a 256-character value and the API model's pattern, is under 700
/// characters; request ids are 36, ARNs at most 256. Text longer than that is not one of
/// Lambda's messages, and a log line of 1 KB per field stays readable.
pub const MAX_UNTRUSTED_CHARS: usize = 1024;

/// Untrusted text (from a server, a proxy, a function), shown capped and escaped.
///
/// As [`Display`](fmt::Display): valid UTF-8 is written as it is, except control
/// characters (`\n`, `\r`, `\t`, `\0`, `ESC` ...), other characters that are not
/// printable (bidirectional overrides, zero-width and line separators, unassigned code
/// points) and combining marks, written as Rust escapes (`\n`, `\u{1b}`); bytes that are
/// not UTF-8 are written `\xNN`. At most [`MAX_UNTRUSTED_CHARS`] characters, escapes
/// included, then `…[N more bytes]`. A backslash is not escaped: the aim is that the
/// text cannot act on a terminal or a log, not that the escaping can be undone.
///
/// Writing it allocates nothing, so it fits a tracing field (`value = %Untrusted::new(s)`);
/// [`to_cow`](Self::to_cow) keeps the clean text, borrowed when nothing had to change.
///
/// ```
/// use invoke_layers::trace::{Untrusted, MAX_UNTRUSTED_CHARS};
///
/// assert_eq!(Untrusted::new("fine").to_cow(), "fine");
/// assert_eq!(Untrusted::new("a\n\x1b[31mb").to_string(), r"a\n\u{1b}[31mb");
/// assert_eq!(Untrusted::bytes(b"Unhandled\xff").to_string(), r"Unhandled\xff");
///
/// let long = "x".repeat(100_000);
/// let shown = Untrusted::new(&long).to_string();
/// assert!(shown.starts_with(&"x".repeat(MAX_UNTRUSTED_CHARS)));
/// assert!(shown.ends_with("…[98976 more bytes]"));
/// ```
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(&'a [u8]);

impl<'a> Untrusted<'a> {
    /// Text that is valid UTF-8.
    pub fn new(text: &'a str) -> Self {
        Self(text.as_bytes())
    }

    /// Bytes that may not be UTF-8 (a header value, a body).
    pub fn bytes(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// True when the text is written as it is: UTF-8, short enough, nothing to escape.
    pub fn is_clean(&self) -> bool {
        // Visible ASCII (the usual case: ids, codes, versions) needs no decoding.
        if self.0.len() <= MAX_UNTRUSTED_CHARS && self.0.iter().all(|b| (0x20..0x7f).contains(b)) {
            return true;
        }
        let Ok(text) = std::str::from_utf8(self.0) else {
            return false;
        };
        text.chars().count() <= MAX_UNTRUSTED_CHARS && !text.chars().any(needs_escape)
    }

    /// The text as written by [`Display`](fmt::Display); borrowed when it is clean.
    pub fn to_cow(&self) -> Cow<'a, str> {
        if self.is_clean() {
            // Clean text is UTF-8.
            if let Ok(text) = std::str::from_utf8(self.0) {
                return Cow::Borrowed(text);
            }
        }
        Cow::Owned(self.to_string())
    }
}

/// Whether a character is written escaped: `char::escape_debug` escapes exactly the
/// characters that are not printable (and combining marks), plus quotes and the
/// backslash, which are harmless here.
fn needs_escape(c: char) -> bool {
    !matches!(c, '"' | '\'' | '\\') && c.escape_debug().len() > 1
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut budget = MAX_UNTRUSTED_CHARS;
        let mut written = 0usize; // bytes of input consumed
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                let escape = needs_escape(c);
                let cost = if escape { c.escape_debug().len() } else { 1 };
                if cost > budget {
                    return write!(f, "…[{} more bytes]", self.0.len() - written);
                }
                budget -= cost;
                if escape {
                    write!(f, "{}", c.escape_debug())?;
                } else {
                    f.write_char(c)?;
                }
                written += c.len_utf8();
            }
            for b in chunk.invalid() {
                if budget < 4 {
                    return write!(f, "…[{} more bytes]", self.0.len() - written);
                }
                budget -= 4;
                write!(f, "\\x{b:02x}")?;
                written += 1;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        for (input, shown) in [
            ("plain text: a/b=c+d", "plain text: a/b=c+d"),
            ("tab\there", r"tab\there"),
            ("a\r\nb", r"a\r\nb"),
            ("\x1b[2J\x07\0\x7f", r"\u{1b}[2J\u{7}\0\u{7f}"),
            ("\u{85}\u{9b}", r"\u{85}\u{9b}"), // C1 controls (NEL, CSI)
            ("abc\u{202e}fed", r"abc\u{202e}fed"),
            ("zero\u{200b}width", r"zero\u{200b}width"),
            ("line\u{2028}sep", r"line\u{2028}sep"),
            (r#"quotes " ' \ stay"#, r#"quotes " ' \ stay"#),
            ("é ü 日本 🦀", "é ü 日本 🦀"),
        ] {
            let u = Untrusted::new(input);
            assert_eq!(u.to_string(), shown, "{input:?}");
            assert_eq!(u.is_clean(), input == shown, "{input:?}");
            assert_eq!(u.to_cow(), shown);
            assert_eq!(matches!(u.to_cow(), Cow::Borrowed(_)), input == shown);
        }
        assert_eq!(
            Untrusted::bytes(b"r\xffd-\xc3\xa9\xc3").to_string(),
            r"r\xffd-é\xc3"
        );
        assert!(!Untrusted::bytes(b"\xff").is_clean());
        assert_eq!(format!("{:?}", Untrusted::new("a\nb")), r#""a\nb""#);
    }

    #[test]
    fn long_text_is_capped_with_what_was_cut() {
        let exact = "x".repeat(MAX_UNTRUSTED_CHARS);
        assert!(Untrusted::new(&exact).is_clean());
        assert_eq!(Untrusted::new(&exact).to_string(), exact);

        let over = "x".repeat(MAX_UNTRUSTED_CHARS + 1);
        assert!(!Untrusted::new(&over).is_clean());
        assert_eq!(
            Untrusted::new(&over).to_string(),
            format!("{exact}…[1 more bytes]")
        );
        // Characters, not bytes, count; an escape counts as what it writes.
        let wide = "日".repeat(MAX_UNTRUSTED_CHARS);
        assert!(Untrusted::new(&wide).is_clean());
        let escapes = "\n".repeat(MAX_UNTRUSTED_CHARS);
        let shown = Untrusted::new(&escapes).to_string();
        assert_eq!(
            shown,
            format!(
                "{}…[{} more bytes]",
                r"\n".repeat(MAX_UNTRUSTED_CHARS / 2),
                MAX_UNTRUSTED_CHARS / 2
            )
        );
        // An escape is never cut in half.
        let mut odd = "x".repeat(MAX_UNTRUSTED_CHARS - 3);
        odd.push('\x1b');
        assert!(Untrusted::new(&odd)
            .to_string()
            .ends_with("x…[1 more bytes]"));
        let mut bytes = vec![b'x'; MAX_UNTRUSTED_CHARS - 2];
        bytes.push(0xff);
        assert!(Untrusted::bytes(&bytes)
            .to_string()
            .ends_with("x…[1 more bytes]"));
        // 100 KB becomes about 1 KB.
        let huge = "y".repeat(100 * 1024);
        assert!(Untrusted::new(&huge).to_string().len() < MAX_UNTRUSTED_CHARS + 32);
    }
}
