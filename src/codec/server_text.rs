//! Text that came from the server (or from anything between it and us), made safe to
//! keep, show and log.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A header value as text. Header values may carry bytes 0x80–0xFF (`obs-text`), which
/// `HeaderValue::to_str` refuses; dropping such a value would make a header whose
/// presence carries meaning (`X-Amz-Function-Error`) vanish. So valid UTF-8 is kept and
/// every byte that is not part of it is written as `\xNN`. Borrowed when the value is
/// visible ASCII (the usual case).
pub(crate) fn header_text(value: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(value) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for chunk in value.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_keeps_utf8_and_escapes_the_rest() {
        assert!(matches!(header_text(b"Handled"), Cow::Borrowed("Handled")));
        assert_eq!(header_text(b"a\xffb\xc3\xa9\xc3"), r"a\xffbé\xc3");
    }
}
