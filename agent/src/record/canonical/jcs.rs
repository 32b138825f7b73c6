//! The two places where the canonical form follows RFC 8785 (JCS) rather
//! than what serde_json writes by default: members are ordered by the
//! keys' UTF-16 code units, and non-integer numbers take the ECMAScript
//! `Number.prototype.toString` form (`1e+21`, `0.000001`, `1` for `1.0`).

use std::cmp::Ordering;

/// Orders two keys (UTF-8 bytes of valid strings) as their UTF-16 code
/// units would be ordered.
///
/// Byte order is code point order, and UTF-16 order differs from that in
/// one case only: a character in U+E000..=U+FFFF (UTF-8 lead byte 0xEE or
/// 0xEF) sorts *after* one beyond U+FFFF (lead 0xF0..=0xF4), whose
/// surrogates start at 0xD800. The first differing byte is either two such
/// lead bytes or a byte within two characters of the same length, where
/// the orders agree; so one byte comparison, flipped in that case, is
/// enough, and ASCII keys cost what a plain byte comparison costs.
pub fn key_order(a: &[u8], b: &[u8]) -> Ordering {
    let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) else {
        return a.len().cmp(&b.len());
    };
    let (x, y) = (a[i], b[i]);
    let high_bmp = |c: u8| c == 0xEE || c == 0xEF;
    if (high_bmp(x) && y >= 0xF0) || (x >= 0xF0 && high_bmp(y)) {
        y.cmp(&x)
    } else {
        x.cmp(&y)
    }
}

/// Appends a finite `x` in the ECMAScript number-to-string form RFC 8785
/// prescribes: the shortest digits that round-trip, plain decimal for
/// exponents from -7 to 20, else `d.ddde+N` / `d.ddde-N`; `-0` is `0`.
///
/// Rust's `{:e}` gives the same shortest round-trip digits; only their
/// layout differs, and that is done here.
pub fn write_f64(x: f64, out: &mut Vec<u8>) {
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    if x < 0.0 {
        out.push(b'-');
    }
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("invariant: {:e} always writes an exponent");
    let exp: i32 = exp
        .parse()
        .expect("invariant: {:e} writes a decimal exponent");
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    // ECMAScript's k (digit count) and n (decimal point position).
    let k = i32::try_from(digits.len()).expect("invariant: at most 17 digits");
    let n = exp + 1;
    if k <= n && n <= 21 {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-n) as usize));
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if n - 1 > 0 { b'+' } else { b'-' });
        out.extend_from_slice((n - 1).unsigned_abs().to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(x: f64) -> String {
        let mut out = Vec::new();
        write_f64(x, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Expected strings are what ECMAScript's `String(x)` gives.
    #[test]
    fn numbers_take_the_ecmascript_form() {
        for (x, want) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (100.0, "100"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (123.456, "123.456"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (9007199254740993.0, "9007199254740992"),
            (333_333_333.333_333_3, "333333333.3333333"),
        ] {
            assert_eq!(num(x), want, "{x:e}");
        }
    }

    #[test]
    fn keys_order_by_utf16_code_units() {
        // U+E000 is one code unit 0xE000; U+1F600 starts with 0xD83D.
        assert_eq!(
            key_order("\u{e000}".as_bytes(), "😀".as_bytes()),
            Ordering::Greater
        );
        assert_eq!(
            key_order("😀".as_bytes(), "\u{ffff}".as_bytes()),
            Ordering::Less
        );
        // Elsewhere byte order stands.
        assert_eq!(key_order(b"a", b"b"), Ordering::Less);
        assert_eq!(key_order(b"ab", b"a"), Ordering::Greater);
        assert_eq!(key_order("é".as_bytes(), "€".as_bytes()), Ordering::Less);
        assert_eq!(
            key_order("\u{d7ff}".as_bytes(), "😀".as_bytes()),
            Ordering::Less
        );
        assert_eq!(key_order("x".as_bytes(), "x".as_bytes()), Ordering::Equal);
    }
}
