//! HTML escaping, the one way every record value reaches the page: the
//! records carry text an attacker chose (argv, comm, paths, unit names).

/// Text as HTML, safe in element content and in quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Would end a Server-Sent Events line early.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}
