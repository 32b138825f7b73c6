//! The bytes of a sealed line: a member value as a canonical JSON
//! string, and the members the seal adds (`hash`, `sig`) put into the
//! object already written for the hash.

use std::borrow::Cow;

use super::canonical;

/// A JSON string, canonically escaped.
pub(super) fn quoted(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    canonical::encode_str(s, &mut out);
    out
}

/// The sealed line: `object` (the canonical object of the sorted
/// `members`, each starting at `starts`) with the `added` members (in key
/// order, none of them among `members`) put in their sorted places, then
/// `\n`. The same bytes as writing all members again, without encoding
/// them again.
pub(super) fn splice_members(
    object: &[u8],
    members: &[(Cow<'_, str>, Cow<'_, [u8]>)],
    starts: &[usize],
    added: &[(&str, Vec<u8>)],
) -> Vec<u8> {
    let extra: usize = added.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut line = Vec::with_capacity(object.len() + extra + 1);
    let mut from = 0;
    for (k, v) in added {
        let i = members.partition_point(|(m, _)| {
            canonical::jcs::key_order(m.as_bytes(), k.as_bytes()).is_lt()
        });
        // Before member i, or last: before the closing brace.
        let (at, last) = match starts.get(i) {
            Some(&at) => (at, false),
            None => (object.len() - 1, true),
        };
        line.extend_from_slice(&object[from..at]);
        if last {
            line.push(b',');
        }
        canonical::encode_str(k, &mut line);
        line.push(b':');
        line.extend_from_slice(v);
        if !last {
            line.push(b',');
        }
        from = at;
    }
    line.extend_from_slice(&object[from..]);
    line.push(b'\n');
    line
}
