//! The canonical encoding (by value and streamed by the writer): sorted
//! keys at every level, serde_json's escapes, and the writer's output
//! byte-identical to the reference encoder for the same value.

mod encoding {
    use serde_json::json;

    use super::super::*;

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

    #[test]
    fn split_members_takes_canonical_objects_only() {
        let v = json!({"b": {"x": [1, "a,}\"]"], "y": null}, "a": "s\\\"", "c": -12, "d": []});
        let line = to_vec(&v);
        let m = split_members(&line).unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        for (k, raw) in &m {
            assert_eq!(*raw, to_vec(&v[*k]).as_slice(), "{k}");
        }
        assert_eq!(split_members(b"{}").unwrap().len(), 0);
        for bad in [
            &b"{\"b\":1,\"a\":2}"[..],
            b"{\"a\":1,\"a\":2}",
            b"{\"a\": 1}",
            b"{\"a\":1} ",
            b"{\"a\":1",
            b"{\"a\":\"x}",
            b"{\"a\":\"x\\",
            b"{\"a\":\"x\\\"}",
            b"{\"a\\u0041\":1}",
            b"[1]",
            b"",
            b"{\"a\":}",
        ] {
            assert!(
                split_members(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn split_members_and_splits_the_inner_object_as_split_members_would() {
        // Long strings too: past the bytes looked at one by one.
        let long = format!("{}\"{}\\", "p".repeat(40), "q".repeat(30));
        let v = json!({"actor": {"argv": ["gdb", long, "}"], "pid": 7, "z": {"k": "]"}}, "kind": "exec"});
        let line = to_vec(&v);
        let (top, inner) = split_members_and(&line, "actor").unwrap();
        assert_eq!(top, split_members(&line).unwrap());
        let actor = top.iter().find(|(k, _)| *k == "actor").unwrap().1;
        assert_eq!(inner.unwrap(), split_members(actor).unwrap());
        // No such member, or not an object: the line still splits.
        assert!(split_members_and(&line, "detail").unwrap().1.is_none());
        assert!(split_members_and(&line, "kind").unwrap().1.is_none());
        // An inner object out of canonical order: no inner split, the
        // line still splits (its value taken as it is).
        let odd = br#"{"actor":{"pid":7,"argv":[]},"kind":"exec"}"#;
        let (top, inner) = split_members_and(odd, "actor").unwrap();
        assert!(inner.is_none());
        assert_eq!(top[0], ("actor", &br#"{"pid":7,"argv":[]}"#[..]));
        // The line itself must still be canonical and complete.
        assert!(split_members_and(br#"{"actor":{"a":1}} "#, "actor").is_none());
        assert!(split_members_and(br#"{"actor":{"a":1}"#, "actor").is_none());
    }
}

mod writer {
    use std::collections::HashMap;

    use serde::Serialize;
    use serde_json::{Value, json};

    use super::super::writer::*;
    use crate::record::canonical;

    #[derive(Serialize)]
    struct Inner {
        zeta: u32,
        alpha: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        list: Vec<&'static str>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Wrapped(u32),
        Pair(u8, u8),
        Shape { w: u32, h: u32 },
    }

    #[derive(Serialize)]
    struct Outer {
        time: String,
        detail: Inner,
        actor: Value,
        counts: HashMap<String, i64>,
        kinds: Vec<Kind>,
        neg: i64,
        big: u64,
        flag: bool,
        ratio: f64,
    }

    #[test]
    fn writes_what_canonical_encode_writes_for_the_same_value() {
        let v = Outer {
            time: "t\u{1}\"\\é\n".into(),
            detail: Inner {
                zeta: 1,
                alpha: None,
                skipped: None,
                list: vec!["b", "a"],
            },
            actor: json!({"pid": 7, "argv": ["x", "y"], "b": {"z": null, "a": [1, {"k": 2, "c": 3}]}}),
            counts: [
                ("b".to_owned(), -1),
                ("a".to_owned(), 2),
                ("é".to_owned(), 0),
            ]
            .into_iter()
            .collect(),
            kinds: vec![
                Kind::Plain,
                Kind::Wrapped(3),
                Kind::Pair(1, 2),
                Kind::Shape { w: 2, h: 1 },
            ],
            neg: i64::MIN,
            big: u64::MAX,
            flag: true,
            ratio: 0.5,
        };
        let mut direct = Vec::new();
        to_writer(&mut direct, &v).unwrap();
        let expected = canonical::to_vec(&serde_json::to_value(&v).unwrap());
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[derive(Serialize)]
    struct Sorted {
        x: &'static str,
        y: Option<u8>,
        z: Inner,
    }

    /// Streams `a`, `b` (itself streamed) and `c`, then `aa` arrives out
    /// of order and everything written so far must move to the buffer.
    #[derive(Serialize)]
    struct Partly {
        a: u8,
        b: Sorted,
        c: Vec<u8>,
        aa: Kind,
        ab: HashMap<&'static str, u8>,
    }

    #[test]
    fn in_order_members_stream_and_a_late_one_out_of_order_still_sorts() {
        let inner = || Inner {
            zeta: 2,
            alpha: Some("a"),
            skipped: Some(1),
            list: vec![],
        };
        let values = [
            Partly {
                a: 1,
                b: Sorted {
                    x: "x",
                    y: None,
                    z: inner(),
                },
                c: vec![3, 1],
                aa: Kind::Shape { w: 1, h: 2 },
                ab: [("q", 1), ("p", 2)].into_iter().collect(),
            },
            Partly {
                a: 0,
                b: Sorted {
                    x: "",
                    y: Some(9),
                    z: inner(),
                },
                c: vec![],
                aa: Kind::Plain,
                ab: HashMap::new(),
            },
        ];
        for v in &values {
            let mut direct = b"prefix".to_vec();
            to_writer(&mut direct, v).unwrap();
            let mut expected = b"prefix".to_vec();
            expected.extend(canonical::to_vec(&serde_json::to_value(v).unwrap()));
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
        let mut sorted = Vec::new();
        to_writer(&mut sorted, &values[0].b).unwrap();
        assert_eq!(
            String::from_utf8(sorted).unwrap(),
            r#"{"x":"x","y":null,"z":{"alpha":"a","list":[],"skipped":1,"zeta":2}}"#
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut out = Vec::new();
        assert!(to_writer(&mut out, &f64::NAN).is_err());
        let mut m = std::collections::BTreeMap::new();
        m.insert(vec![1u8], 1);
        assert!(to_writer(&mut out, &m).is_err());
    }
}
