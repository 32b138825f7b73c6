//! Fuzz target: canonical JSON (`record::canonical`), the bytes record
//! hashes are computed over. For any JSON value: the encoding parses back
//! to the same value, encoding that again gives the same bytes, the
//! streaming writer agrees with `encode`, and `split_members` reads back
//! exactly the members of a canonical object, and `split_members_and`
//! the same ones, with each inner object split as `split_members` would.
#![no_main]

use agent::record::canonical;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Equal as JSON values: numbers by value, so `1000.0` written as RFC 8785
/// writes it (`1000`) and read back as an integer is the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| same(p, q)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes may be a record line verify is given.
    let split = canonical::split_members(data);
    check_inner(data, split.as_deref());
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let bytes = canonical::to_vec(&v);
    let back: serde_json::Value = serde_json::from_slice(&bytes).expect("canonical output is JSON");
    assert!(same(&back, &v), "canonical encoding changed the value");
    assert_eq!(canonical::to_vec(&back), bytes, "encoding is not stable");
    let mut streamed = Vec::new();
    canonical::writer::to_writer(&mut streamed, &v).expect("a Value always writes");
    assert_eq!(streamed, bytes, "writer and encode disagree");
    // split_members declines keys written with escapes (a quote, a
    // backslash, a control character), and its callers then parse the
    // line in full; every other canonical object must split.
    if let serde_json::Value::Object(map) = &v
        && !map
            .keys()
            .any(|k| k.chars().any(|c| c == '"' || c == '\\' || c < ' '))
    {
        let members = canonical::split_members(&bytes).expect("a canonical object splits");
        assert_eq!(members.len(), map.len());
        check_inner(&bytes, Some(&members));
    }
});

/// `split_members_and` agrees with `split_members` on the line, and splits
/// each member's value exactly when `split_members` splits it alone.
fn check_inner(line: &[u8], members: Option<&[canonical::Member<'_>]>) {
    let Some(members) = members else {
        assert!(canonical::split_members_and(line, "k").is_none());
        return;
    };
    for (key, raw) in members {
        let (top, inner) =
            canonical::split_members_and(line, key).expect("the line splits as before");
        assert_eq!(top, members);
        let alone = if raw.first() == Some(&b'{') {
            canonical::split_members(raw)
        } else {
            None
        };
        assert_eq!(inner, alone, "inner split of {key}");
    }
}
