//! Value types of the config file that a bare integer or string would make
//! error-prone: durations written as `"30m"`, sizes written as `"1GiB"`, and
//! secrets that must never reach a log line or `config check` output.

use std::{fmt, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration written as `<n><unit>` terms: `"90s"`, `"30m"`, `"4h"`,
/// `"1h30m"`, `"7d"`. Units are s, m, h, d; `"0"` is zero.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    /// The grammar of [`crate::duration`], shared with the CLI and grants.
    fn from_str(s: &str) -> Result<Self, String> {
        crate::duration::parse(s)
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for HumanDuration {
    /// The shortest `<n><unit>` spelling that parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::duration::Display(self.0), f)
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A size in bytes: an integer, or a string with a binary unit
/// (`"512KiB"`, `"64MiB"`, `"1GiB"`) or a plain `"1024"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (num, mult) = UNITS
            .iter()
            .find_map(|(u, m)| t.strip_suffix(u).map(|n| (n.trim(), *m)))
            .unwrap_or((t, 1));
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid size {s:?}: write bytes, or a number with KiB, MiB, GiB or TiB")
        })?;
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the value exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (u, m) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(m) && m > 1 {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string like \"64MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A secret (password, token). `Debug`, `Display` and `Serialize` print a
/// mask, so neither logs nor `debugmon config check` can leak it; the value
/// is reachable only through [`Secret::expose`], named so that every use is
/// easy to audit.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// What a secret prints as.
pub const MASK: &str = "********";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that authenticates with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (s, secs) in [
            ("90s", 90),
            ("30m", 1800),
            ("4h", 14_400),
            ("1h30m", 5400),
            ("7d", 604_800),
            ("0", 0),
        ] {
            let d: HumanDuration = s.parse().unwrap();
            assert_eq!(d.0.as_secs(), secs, "{s}");
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
    }

    #[test]
    fn bad_durations_say_why() {
        assert!("4x".parse::<HumanDuration>().unwrap_err().contains("unit"));
        assert!(
            "30".parse::<HumanDuration>()
                .unwrap_err()
                .contains("no unit")
        );
        assert!("h".parse::<HumanDuration>().unwrap_err().contains("number"));
        assert!("".parse::<HumanDuration>().is_err());
        assert!(
            "99999999999999999999d"
                .parse::<HumanDuration>()
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("1GiB".parse::<ByteSize>().unwrap().0, 1 << 30);
        assert_eq!("64 MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert_eq!("1000".parse::<ByteSize>().unwrap().0, 1000);
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        assert!("1GB".parse::<ByteSize>().is_err());
        assert!("-1".parse::<ByteSize>().is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), format!("{MASK} {MASK}"));
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{MASK}\""));
        assert_eq!(s.expose(), "hunter2");
    }
}
