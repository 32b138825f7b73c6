//! Reading records back for an auditor (`debugmon review`): every line
//! goes both to the [`Verifier`] and into an [`Entry`], and when the input
//! ends each entry is given the verdict the verification reached for its
//! seq ([`Status`]). Nothing is dropped on the way: a line that is not a
//! record, or a record whose hash, link or signature fails, is an entry
//! like any other, shown with what is wrong, and filters only ever narrow
//! what is shown, after verification has seen the whole input.
//!
//! - [`fields`]: what a record says (who, what, to whom, when), read the
//!   same way by filters, summaries and tables
//! - [`filter`]: the combinable filters
//! - [`session`]: records of one login session, across hosts
//! - [`summary`]: who debugged what, denials, grants and their use, hosts
//! - [`table`]: rows rendered as an aligned table, JSON lines or CSV
//! - [`serve`]: the same as a read-only web page with live updates

pub mod fields;
pub mod filter;
pub mod serve;
pub mod session;
pub mod summary;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use self::{filter::Filter, summary::Summary, table::Table};
use crate::record::verify::{LineSink, Problem, Verifier, VerifyError, VerifyReport, trust::Trust};

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// The output for one review: the view asked for, over the entries the
/// filter selects.
pub fn render(
    reviewed: &Reviewed,
    filter: &Filter,
    summary: Option<Summary>,
    sessions: bool,
    format: Format,
) -> String {
    let all: Vec<&Entry> = reviewed.entries.iter().collect();
    let shown: Vec<&Entry> = all.iter().copied().filter(|e| filter.matches(e)).collect();
    let table: Table = match summary {
        None if format == Format::Json => return summary::records_json(&shown, sessions),
        None => summary::records(&shown, sessions),
        Some(Summary::Who) => summary::who(&shown),
        Some(Summary::Denials) => summary::denials(&shown, &all),
        Some(Summary::Grants) => summary::grants(&shown, &all),
        Some(Summary::Hosts) => summary::hosts(reviewed, &filter.hosts),
    };
    match format {
        Format::Table => table.aligned(),
        Format::Json => table.json_lines(),
        Format::Csv => table.csv(),
    }
}

/// Whether a record's seal held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Hash, link and a signature by a trusted key (its own or that of a
    /// later record it links to) all check.
    Verified,
    /// Its seal and links check, but no signature vouches for it (the
    /// chain ends before the next signed record).
    Unsigned,
    /// What failed: edited, broken link, bad signature, duplicate, ...
    Failed(Vec<String>),
    /// The host, or the key it signs with, is not trusted.
    Untrusted(String),
    /// Not a sealed record at all.
    Malformed(String),
}

impl Status {
    /// `true` only for [`Status::Verified`].
    pub fn ok(&self) -> bool {
        *self == Self::Verified
    }

    /// One short word for tables: `ok`, `unsigned`, `FAILED`, ...
    pub fn word(&self) -> &'static str {
        match self {
            Self::Verified => "ok",
            Self::Unsigned => "unsigned",
            Self::Failed(_) => "FAILED",
            Self::Untrusted(_) => "UNTRUSTED",
            Self::Malformed(_) => "MALFORMED",
        }
    }

    /// The word and, when it is not `ok`, why.
    pub fn text(&self) -> String {
        match self {
            Self::Verified | Self::Unsigned => self.word().to_owned(),
            Self::Failed(why) => format!("FAILED: {}", why.join("; ")),
            Self::Untrusted(why) => format!("UNTRUSTED: {why}"),
            Self::Malformed(why) => format!("MALFORMED: {why}"),
        }
    }
}

/// One line of the input and what verification said about it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Line number in the input (1-based, blank lines counted).
    pub line: u64,
    /// The sealed record (an ECS document's `debugmon` member); `Null`
    /// for a line that is not JSON.
    pub record: Value,
    pub status: Status,
}

/// Collects lines, verifying them as they come; [`Review::finish`] gives
/// every entry its status.
#[derive(Debug)]
pub struct Review {
    verifier: Verifier,
    entries: Vec<Entry>,
    lines: u64,
}

/// The whole input, verified.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// In input order.
    pub entries: Vec<Entry>,
    pub report: VerifyReport,
}

impl Review {
    /// `now_ns`: where the input counts as ending, for silence (`None`:
    /// its newest record), as `verify --now`.
    pub fn new(trust: Trust, now_ns: Option<i64>) -> Result<Self, VerifyError> {
        Ok(Self {
            verifier: Verifier::with_trust(trust)?.with_now(now_ns),
            entries: Vec::new(),
            lines: 0,
        })
    }

    pub fn finish(self) -> Reviewed {
        let report = self.verifier.finish();
        let malformed: BTreeMap<u64, &str> = report
            .malformed
            .iter()
            .map(|m| (m.line, m.reason.as_str()))
            .collect();
        let verdicts: BTreeMap<&str, HostVerdict> = report
            .hosts
            .iter()
            .map(|(id, h)| (id.as_str(), HostVerdict::of(&h.problems)))
            .collect();
        let entries = self
            .entries
            .into_iter()
            .map(|mut e| {
                e.status = match malformed.get(&e.line) {
                    Some(why) => Status::Malformed((*why).to_owned()),
                    None => match (fields::host_key(&e.record), fields::seq(&e.record)) {
                        (Some(host), Some(seq)) => verdicts
                            .get(host.as_str())
                            .map_or(Status::Verified, |v| v.status(seq)),
                        _ => Status::Malformed("no host or seq".into()),
                    },
                };
                e
            })
            .collect();
        Reviewed { entries, report }
    }
}

impl LineSink for Review {
    fn push_line(&mut self, line: &[u8]) {
        self.verifier.push_line(line);
        self.lines += 1;
        if line.trim_ascii().is_empty() {
            return;
        }
        let record = match serde_json::from_slice::<Value>(line) {
            Ok(mut v) => {
                // As `verify` reads it: an ECS document carries the sealed
                // record whole under `debugmon`.
                if v.get("ecs").is_some() && v["debugmon"].is_object() {
                    v = v["debugmon"].take();
                }
                v
            }
            Err(_) => Value::Null,
        };
        self.entries.push(Entry {
            line: self.lines,
            record,
            // Until `finish` knows.
            status: Status::Unsigned,
        });
    }
}

/// What one host's problems say about each of its records.
#[derive(Debug, Default)]
struct HostVerdict {
    /// The host or a key it announced is not trusted: every record.
    untrusted: Option<String>,
    failed: BTreeMap<u64, Vec<String>>,
    unsigned: Vec<(u64, u64)>,
}

impl HostVerdict {
    fn of(problems: &[Problem]) -> Self {
        let mut v = Self::default();
        let mut untrusted = BTreeSet::new();
        for p in problems {
            let mut fail = |seq: u64| v.failed.entry(seq).or_default().push(p.to_string());
            match p {
                Problem::HashMismatch { seq }
                | Problem::BadSignature { seq }
                | Problem::Duplicate { seq }
                | Problem::Conflict { seq }
                | Problem::Reordered { seq, .. }
                | Problem::BrokenLink { seq, .. } => fail(*seq),
                Problem::Unsigned { from, to } => v.unsigned.push((*from, *to)),
                Problem::NoKey | Problem::UnknownHost { .. } | Problem::UntrustedKey { .. } => {
                    untrusted.insert(p.to_string());
                }
                // About the host's chain as a whole, not one record: the
                // hosts summary shows them.
                Problem::Gap { .. } | Problem::EndsOpen { .. } | Problem::Silent { .. } => {}
            }
        }
        if !untrusted.is_empty() {
            v.untrusted = Some(untrusted.into_iter().collect::<Vec<_>>().join("; "));
        }
        v
    }

    fn status(&self, seq: u64) -> Status {
        if let Some(why) = self.failed.get(&seq) {
            return Status::Failed(why.clone());
        }
        if let Some(why) = &self.untrusted {
            return Status::Untrusted(why.clone());
        }
        if self.unsigned.iter().any(|(a, b)| (*a..=*b).contains(&seq)) {
            return Status::Unsigned;
        }
        Status::Verified
    }
}

#[cfg(test)]
mod tests;
