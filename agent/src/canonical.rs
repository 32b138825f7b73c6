//! The canonical JSON encoding that record hashes are computed over.
//!
//! Written out by hand rather than relying on `serde_json::Map` ordering:
//! that order depends on whether *any* crate in the build enables
//! serde_json's `preserve_order` feature, and a hash must not change because
//! a dev-dependency did. The definition (also in docs/records.md):
//!
//! - objects: members sorted by key, comparing the keys' UTF-8 bytes;
//!   `{"k":v,...}` with no whitespace;
//! - arrays: `[v,...]` in order, no whitespace;
//! - strings: serde_json's escaping: `"` and `\` escaped with a backslash,
//!   `\b \f \n \r \t` for those controls, `\u00XX` (lower-case hex) for the
//!   other bytes below 0x20, everything else (including non-ASCII) as raw
//!   UTF-8;
//! - numbers: integers in plain decimal; other numbers as serde_json prints
//!   them (shortest round-trip form). Records only carry integers.
//! - `true`, `false`, `null` as such.

use serde_json::Value;

/// Appends the canonical encoding of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
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
    sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
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

fn encode_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is the definition above; writing into a
    // Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("invariant: writing a str into a Vec never fails");
}

/// The canonical encoding of `v` as a new buffer.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    encode(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_are_sorted_by_bytes_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": true}], "B": "s"}, "é": false});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"a":{"B":"s","z":[3,{"x":true,"y":null}]},"b":1,"é":false}"#
        );
    }

    #[test]
    fn strings_use_json_escapes_and_raw_utf8() {
        let v = json!("q\"b\\n\n\u{1}é");
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            "\"q\\\"b\\\\n\\n\\u0001é\""
        );
    }

    #[test]
    fn encoding_is_stable_through_a_parse() {
        let v = json!({"seq": 18_446_744_073_709_551_615_u64, "n": -5, "f": 1.5});
        let bytes = to_vec(&v);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(to_vec(&back), bytes);
    }
}
