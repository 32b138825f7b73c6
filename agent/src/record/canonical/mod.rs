//! The canonical JSON encoding that record hashes are computed over.
//!
//! Written out by hand rather than relying on `serde_json::Map` ordering:
//! that order depends on whether *any* crate in the build enables
//! serde_json's `preserve_order` feature, and a hash must not change because
//! a dev-dependency did. The definition (also in docs/records.md):
//!
//! - objects: members sorted by key, comparing the keys' UTF-16 code units
//!   as RFC 8785 does ([`jcs::key_order`]; the same as comparing UTF-8
//!   bytes unless keys mix U+E000..U+FFFF with characters beyond);
//!   `{"k":v,...}` with no whitespace;
//! - arrays: `[v,...]` in order, no whitespace;
//! - strings: serde_json's escaping: `"` and `\` escaped with a backslash,
//!   `\b \f \n \r \t` for those controls, `\u00XX` (lower-case hex) for the
//!   other bytes below 0x20, everything else (including non-ASCII) as raw
//!   UTF-8;
//! - numbers: integers in plain decimal, exactly (also beyond 2^53, where
//!   RFC 8785 would round through a double: the one intended difference);
//!   other numbers in RFC 8785's ECMAScript form ([`jcs::write_f64`]).
//!   Records only carry integers.
//!
//! Everything else is RFC 8785 (JCS) byte for byte; the differential test
//! `agent/tests/jcs_differential.rs` compares against an independent
//! implementation.
//! - `true`, `false`, `null` as such.

pub mod jcs;
pub mod writer;

use serde_json::Value;

/// Appends the canonical encoding of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match n.as_f64() {
            Some(x) if !n.is_i64() && !n.is_u64() => jcs::write_f64(x, out),
            _ => out.extend_from_slice(n.to_string().as_bytes()),
        },
        Value::String(s) => encode_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => encode_members(map.iter(), out),
    }
}

/// Encodes an object given as members, in canonical order.
pub fn encode_members<'a>(
    members: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut Vec<u8>,
) {
    let mut sorted: Vec<(&String, &Value)> = members.collect();
    sorted.sort_unstable_by(|a, b| jcs::key_order(a.0.as_bytes(), b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_str(k, out);
        out.push(b':');
        encode(v, out);
    }
    out.push(b'}');
}

pub(crate) fn encode_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is the definition above; writing into a
    // Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("invariant: writing a str into a Vec never fails");
}

/// Writes members whose values are already canonical as a canonical
/// object: sorted by key, `{"k":v,...}`. `key` reads a member's key,
/// `value` appends its value.
pub fn write_object<M>(
    members: &mut [M],
    key: impl Fn(&M) -> &str,
    value: impl Fn(&M, &mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    write_object_marked(members, key, value, out, |_| {});
}

/// [`write_object`], telling `mark` where in `out` each member (in the
/// sorted order `members` is left in) starts.
pub fn write_object_marked<M>(
    members: &mut [M],
    key: impl Fn(&M) -> &str,
    value: impl Fn(&M, &mut Vec<u8>),
    out: &mut Vec<u8>,
    mut mark: impl FnMut(usize),
) {
    members.sort_unstable_by(|a, b| jcs::key_order(key(a).as_bytes(), key(b).as_bytes()));
    out.push(b'{');
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        mark(out.len());
        encode_str(key(m), out);
        out.push(b':');
        value(m, out);
    }
    out.push(b'}');
}

/// A member of an object in canonical form: its key and raw value.
pub type Member<'a> = (&'a str, &'a [u8]);

/// The members of an object written in canonical form (as
/// [`writer`] writes it), as (key, raw value) in order,
/// without parsing the values. `None` when `line` is not such an object at
/// the top level (keys with escapes, out of order or repeated, whitespace,
/// trailing bytes); nested values are taken as they are.
pub fn split_members(line: &[u8]) -> Option<Vec<Member<'_>>> {
    let (members, end) = split_object(line, 0, None, &mut None)?;
    (end == line.len()).then_some(members)
}

/// A line's members and those of one member's object value.
pub type SplitWithInner<'a> = (Vec<Member<'a>>, Option<Vec<Member<'a>>>);

/// [`split_members`], also splitting the value of the member named
/// `inner` in the same pass (one look at its bytes instead of two):
/// `Some` when that value is an object in canonical form.
pub fn split_members_and<'a>(line: &'a [u8], inner: &str) -> Option<SplitWithInner<'a>> {
    let mut nested = None;
    let (members, end) = split_object(line, 0, Some(inner), &mut nested)?;
    (end == line.len()).then_some((members, nested))
}

/// Splits the canonical object that opens at `i`; returns its members and
/// the index after it. The value of member `inner`, if an object in
/// canonical form, is split into `nested`.
fn split_object<'a>(
    line: &'a [u8],
    i: usize,
    inner: Option<&str>,
    nested: &mut Option<Vec<Member<'a>>>,
) -> Option<(Vec<Member<'a>>, usize)> {
    if line.get(i) != Some(&b'{') {
        return None;
    }
    let mut members: Vec<Member<'a>> = Vec::with_capacity(12);
    let mut i = i + 1;
    if line.get(i) == Some(&b'}') {
        return Some((members, i + 1));
    }
    loop {
        if line.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(line, i)?;
        let key = &line[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        let key = std::str::from_utf8(key).ok()?;
        if members
            .last()
            .is_some_and(|(k, _)| jcs::key_order(k.as_bytes(), key.as_bytes()).is_ge())
        {
            return None;
        }
        if line.get(key_end) != Some(&b':') {
            return None;
        }
        let start = key_end + 1;
        let split = (inner == Some(key) && line.get(start) == Some(&b'{'))
            .then(|| split_object(line, start, None, &mut None))
            .flatten();
        let end = match split {
            Some((m, end)) => {
                *nested = Some(m);
                end
            }
            None => skip_value(line, start)?,
        };
        members.push((key, &line[start..end]));
        match line.get(end) {
            Some(b',') => i = end + 1,
            Some(b'}') => return Some((members, end + 1)),
            _ => return None,
        }
    }
}

/// Bytes of a string looked at one by one before the vector search.
const SHORT_STRING: usize = 24;

/// Index after the string that opens at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    // Most strings are keys and short names, which a plain loop finishes
    // before a vector search would have set up; past the first bytes, a
    // long string (argv, paths) is crossed by jumping between quotes and
    // backslashes instead of looking at every byte.
    let mut j = i + 1;
    while j < i + 1 + SHORT_STRING {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        match b[j] {
            b'\\' => j += 2,
            _ => return Some(j + 1),
        }
    }
}

/// Index after the JSON value that starts at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // A number or literal: no whitespace in canonical form.
            let len = b[i..]
                .iter()
                .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-')))
                .unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

/// The canonical encoding of `v` as a new buffer.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    encode(v, &mut out);
    out
}

#[cfg(test)]
mod tests;
