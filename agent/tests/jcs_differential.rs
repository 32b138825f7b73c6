//! Differential test of the canonical JSON records are hashed over
//! (`record::canonical`) against an independent RFC 8785 (JCS)
//! implementation, the `rfc8785` Python package (`cargo xtask setup`
//! installs it). Thousands of generated values (escapes, unicode beyond
//! the BMP, keys whose UTF-16 order differs from their byte order, edge
//! floats, nesting) must give identical bytes.
//!
//! The one intended difference is not generated: integers beyond 2^53,
//! which we write exactly and RFC 8785 rounds through a double
//! (docs/records.md).

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use agent::record::canonical;
use serde_json::{Map, Number, Value};

/// Largest integer RFC 8785 takes as it is.
const MAX_SAFE: i64 = (1 << 53) - 1;

/// xorshift64*: reproducible values without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Characters chosen for where encoders go wrong: escapes, the controls,
/// DEL, line separators, the BOM, both sides of the surrogate range, and
/// beyond the BMP.
const TRICKY: &[char] = &[
    '"',
    '\\',
    '/',
    '\u{0}',
    '\u{8}',
    '\u{9}',
    '\u{a}',
    '\u{c}',
    '\u{d}',
    '\u{1f}',
    '\u{7f}',
    '\u{80}',
    'é',
    '€',
    '\u{2028}',
    '\u{2029}',
    '\u{feff}',
    '\u{d7ff}',
    '\u{e000}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{10000}',
    '😀',
    '\u{10ffff}',
    'a',
    'Z',
    '0',
    ' ',
];

fn string(r: &mut Rng) -> String {
    let len = r.below(8);
    (0..len)
        .map(|_| match r.below(4) {
            0 => char::from_u32(r.below(0x11_0000) as u32).unwrap_or('x'),
            1 => char::from(b'a' + r.below(26) as u8),
            _ => *r.pick(TRICKY),
        })
        .collect()
}

/// Doubles that test the number form: both exponent thresholds, the
/// extremes, negative zero, binary fractions and their neighbours.
const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    0.1,
    0.5,
    1.5,
    -2.25,
    1e20,
    1e21,
    9.999_999_999_999_999e20,
    1e-6,
    1e-7,
    5e-324,
    2.225_073_858_507_201e-308,
    f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    9_007_199_254_740_992.0,
    9_007_199_254_740_994.0,
    123_456_789_012_345_680_000.0,
    333_333_333.333_333_3,
    1e300,
    -1e-300,
];

fn number(r: &mut Rng) -> Value {
    match r.below(5) {
        0 => Value::from(r.below(1000) as i64 - 500),
        1 => Value::from((r.next() as i64) % (MAX_SAFE + 1)),
        2 => Value::Number(Number::from_f64(*r.pick(FLOATS)).expect("finite")),
        _ => {
            // Any finite double, from its bits.
            let x = loop {
                let x = f64::from_bits(r.next());
                if x.is_finite() {
                    break x;
                }
            };
            Value::Number(Number::from_f64(x).expect("finite"))
        }
    }
}

fn value(r: &mut Rng, depth: u32) -> Value {
    let leaf = depth >= 4 || r.below(3) == 0;
    match r.below(if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(r.below(2) == 0),
        2 | 3 => number(r),
        4 => Value::String(string(r)),
        5 => Value::Array((0..r.below(5)).map(|_| value(r, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..r.below(6) {
                // Keys mixing the two ranges whose UTF-16 and UTF-8 orders
                // disagree, and ordinary ones.
                let key = match r.below(3) {
                    0 => format!(
                        "{}{}",
                        r.pick(&['\u{e000}', '\u{ffff}', '😀', '\u{10000}']),
                        string(r)
                    ),
                    _ => string(r),
                };
                m.insert(key, value(r, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// The reference: reads JSON lines, writes each value's RFC 8785 bytes,
/// hex-encoded, one per line.
const REFERENCE: &str = r#"
import json, sys, rfc8785
for line in sys.stdin:
    print(rfc8785.dumps(json.loads(line)).hex())
"#;

#[test]
fn canonical_json_matches_an_independent_rfc8785_implementation() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut values: Vec<Value> = (0..4000).map(|_| value(&mut r, 0)).collect();
    // Every float edge at the top level, with its neighbours on both sides.
    for x in FLOATS {
        for y in [x.next_down(), *x, x.next_up()] {
            if let Some(n) = Number::from_f64(y) {
                values.push(Value::Number(n));
            }
        }
    }
    values.push(Value::from(MAX_SAFE));
    values.push(Value::from(-MAX_SAFE));

    let mut input = Vec::new();
    for v in &values {
        // serde_json writes doubles in shortest round-trip form, so Python
        // reads back exactly the double generated here.
        serde_json::to_writer(&mut input, v).unwrap();
        input.push(b'\n');
    }
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(REFERENCE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (cargo xtask setup installs it)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the reference failed (is the rfc8785 package installed? `cargo xtask setup`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<Vec<u8>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| hex::decode(l).unwrap())
        .collect();
    assert_eq!(expected.len(), values.len(), "one answer per value");

    let mut differ = Vec::new();
    for (v, want) in values.iter().zip(&expected) {
        let ours = canonical::to_vec(v);
        let mut streamed = Vec::new();
        canonical::writer::to_writer(&mut streamed, v).unwrap();
        assert_eq!(streamed, ours, "writer and encode disagree on {v}");
        if ours != *want {
            differ.push(format!(
                "\n  ours: {}\n  jcs:  {}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(want)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} values differ, e.g.:{}",
        differ.len(),
        values.len(),
        differ.iter().take(5).cloned().collect::<String>()
    );
}
