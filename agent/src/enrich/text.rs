//! Kernel byte strings as record text. Paths, names and arguments need not
//! be UTF-8; they are rendered reversibly (`\xNN` for each invalid byte,
//! `\\` for a backslash) and the record lists the fields that needed it
//! in `detail.escaped`, so nothing is silently replaced.

use std::borrow::Cow;

/// Renders bytes as a string; `true` when escaping was needed.
pub fn render(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return (Cow::Borrowed(s), false);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if ch == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(ch);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (Cow::Owned(out), true)
}

/// Renders bytes and remembers whether escaping was needed.
pub struct Escapes(pub Vec<&'static str>);

impl Escapes {
    pub fn text(&mut self, field: &'static str, b: &[u8]) -> String {
        let (s, esc) = render(b);
        if esc && !self.0.contains(&field) {
            self.0.push(field);
        }
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_reversible_for_invalid_utf8() {
        assert_eq!(render(b"plain"), (Cow::Borrowed("plain"), false));
        let (s, esc) = render(b"a\xffb\\c");
        assert!(esc);
        assert_eq!(s, "a\\xffb\\\\c");
        // Valid UTF-8 with a backslash is left alone (nothing was escaped).
        assert_eq!(render(b"a\\x41").0, "a\\x41");
    }
}
