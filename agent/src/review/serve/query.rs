//! The page's query string: the filters of `debugmon review`, named as its
//! flags (`?since=2h&kind=ptrace&kind=mem_access&host=db-7&failed=1`),
//! each repeatable, parsed into the same [`Filter`] with the same time
//! grammar, so the page and the command select the same records.

use super::super::filter::{Filter, instant_ns};

/// The filter parameters, in the order the form shows them.
pub const NAMES: &[&str] = &[
    "since", "until", "host", "user", "rule", "decision", "kind", "target", "tag",
];

/// A query string's parameters, decoded, empty values dropped (an empty
/// form field means no condition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            if !v.is_empty() || k == "failed" {
                out.push((k, v));
            }
        }
        Ok(Self(out))
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Encoded again, for links that keep the view.
    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The filters; an unknown parameter or a time that does not parse is
    /// an error the page shows, as the command would refuse the flag.
    pub fn filter(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Filter, String> {
        for (k, _) in &self.0 {
            if !NAMES.contains(&k.as_str()) && k != "failed" {
                return Err(format!("unknown filter {k:?}"));
            }
        }
        let once = |name: &str| -> Result<Option<i64>, String> {
            match self.all(name).as_slice() {
                [] => Ok(None),
                [one] => instant_ns(name, one, now).map(Some),
                _ => Err(format!("--{name} given more than once")),
            }
        };
        Ok(Filter {
            since_ns: once("since")?,
            until_ns: once("until")?,
            hosts: self.all("host"),
            users: self.all("user"),
            rules: self.all("rule"),
            decisions: self.all("decision"),
            kinds: self.all("kind"),
            targets: self.all("target"),
            tags: self.all("tag"),
            failed_only: self
                .first("failed")
                .is_some_and(|v| !matches!(v, "0" | "false" | "no")),
        })
    }
}

/// Percent-decoding with `+` as a space, as forms send it; bytes that are
/// not UTF-8 are an error rather than a guess.
pub fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

/// Percent-encoding of everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}
