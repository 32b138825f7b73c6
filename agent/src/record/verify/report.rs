//! What `verify` found: per host, the problems (each with its seqs), the
//! last heartbeat and notes; `ok()` is false on any problem or malformed
//! line, or when there was nothing to verify.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;

/// One thing wrong with a host's records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// Seqs `from..=to` are missing.
    Gap { from: u64, to: u64 },
    /// The same record twice.
    Duplicate { seq: u64 },
    /// Two different records with one seq.
    Conflict { seq: u64 },
    /// `seq` arrived after the higher `after`.
    Reordered { seq: u64, after: u64 },
    /// The content does not match its `hash`: the record was edited.
    HashMismatch { seq: u64 },
    /// `prev_hash` of `seq` is not the `hash` of `prev_seq`.
    BrokenLink { seq: u64, prev_seq: u64 },
    /// Malformed, or not made by the host key.
    BadSignature { seq: u64 },
    /// Seqs `from..=to` carry no signature, and no later signed record
    /// they link to (unbroken) vouches for them.
    Unsigned { from: u64, to: u64 },
    /// No `--key` and no start record with `detail.public_key`.
    NoKey,
    /// The host's name is not in the trusted-keys file (and no
    /// `--trust-on-first-use`).
    UnknownHost { host: String },
    /// The start record at `seq` announces a key the trusted-keys file
    /// does not give this host (`owner`: the host it belongs to, if any).
    UntrustedKey {
        seq: u64,
        key: String,
        owner: Option<String>,
    },
    /// The chain ends without a `stopped` record and its last own record
    /// (seq, time) is `seconds` older than the end of the input (`--now`,
    /// else its newest record), more than three heartbeat intervals:
    /// records were cut from its end, or the agent went silent.
    EndsOpen {
        seq: u64,
        time: String,
        seconds: u64,
        interval_s: u64,
    },
    /// Nothing between seq `from` and seq `to` for `seconds`, more than
    /// three heartbeat intervals, and no clean stop explains it: the agent
    /// was stopped, frozen or killed.
    Silent {
        from: u64,
        to: u64,
        seconds: u64,
        interval_s: u64,
    },
}

impl Problem {
    /// The seq the problem is about (for sorting).
    pub fn seq(&self) -> u64 {
        match self {
            Self::Gap { from: seq, .. }
            | Self::Duplicate { seq }
            | Self::Conflict { seq }
            | Self::Reordered { seq, .. }
            | Self::HashMismatch { seq }
            | Self::BrokenLink { seq, .. }
            | Self::BadSignature { seq }
            | Self::Unsigned { from: seq, .. }
            | Self::Silent { from: seq, .. }
            | Self::UntrustedKey { seq, .. }
            | Self::EndsOpen { seq, .. } => *seq,
            Self::NoKey | Self::UnknownHost { .. } => 0,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gap { from, to } if from == to => write!(f, "gap: seq {from} is missing"),
            Self::Gap { from, to } => write!(f, "gap: seqs {from}..={to} are missing"),
            Self::Duplicate { seq } => write!(f, "duplicate: seq {seq} appears more than once"),
            Self::Conflict { seq } => write!(f, "conflict: two different records with seq {seq}"),
            Self::Reordered { seq, after } => {
                write!(f, "reordered: seq {seq} came after seq {after}")
            }
            Self::HashMismatch { seq } => write!(f, "edited: seq {seq} does not match its hash"),
            Self::BrokenLink { seq, prev_seq } => {
                write!(
                    f,
                    "broken chain: prev_hash of seq {seq} is not the hash of seq {prev_seq}"
                )
            }
            Self::BadSignature { seq } => write!(f, "bad signature on seq {seq}"),
            Self::Unsigned { from, to } => write!(
                f,
                "unsigned: seqs {from}..={to} carry no signature and no later signed record links to them"
            ),
            Self::NoKey => write!(
                f,
                "no public key (pass --key, or include the agent start record)"
            ),
            Self::UnknownHost { host } => write!(
                f,
                "untrusted: host {host:?} is not in the trusted-keys file (add its key with `debugmon key add`, or pass --trust-on-first-use)"
            ),
            Self::UntrustedKey {
                seq,
                key,
                owner: Some(owner),
            } => write!(
                f,
                "untrusted: seq {seq} announces key {key}, which is trusted for host {owner:?}, not this one"
            ),
            Self::UntrustedKey {
                seq,
                key,
                owner: None,
            } => write!(
                f,
                "untrusted: seq {seq} announces key {key}, which the trusted-keys file does not give this host"
            ),
            Self::EndsOpen {
                seq,
                time,
                seconds,
                interval_s,
            } => write!(
                f,
                "ends open: no stop record, and the last heartbeat or start (seq {seq} at {time}) is {seconds}s before the end of the input (heartbeat every {interval_s}s): the tail may have been cut"
            ),
            Self::Silent {
                from,
                to,
                seconds,
                interval_s,
            } => write!(
                f,
                "silent: host went silent for {seconds}s between seq {from} and seq {to} (heartbeat every {interval_s}s; no clean stop)"
            ),
        }
    }
}

/// A line that is not a sealed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Malformed {
    pub line: u64,
    pub reason: String,
}

/// The last record a good signature covers through unbroken links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proven {
    pub seq: u64,
    /// Its `time` (RFC 3339); `None` when the record had none.
    pub time: Option<String>,
}

/// A host's latest heartbeat record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    pub seq: u64,
    /// Its `time` (RFC 3339); `None` when the record had none.
    pub time: Option<String>,
    pub interval_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub name: String,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Public keys announced by start records, in order.
    pub keys: Vec<String>,
    /// How far the chain is proven (`None`: no record verified).
    pub proven_to: Option<Proven>,
    /// `None`: the host sent none.
    pub last_heartbeat: Option<Heartbeat>,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Keyed by host id (machine-id; the name when there is none).
    pub hosts: BTreeMap<String, HostReport>,
    pub malformed: Vec<Malformed>,
}

impl VerifyReport {
    /// True when at least one record was checked and nothing is wrong.
    pub fn ok(&self) -> bool {
        !self.hosts.is_empty()
            && self.malformed.is_empty()
            && self.hosts.values().all(|h| h.problems.is_empty())
    }

    /// Every problem, with its host id.
    pub fn problems(&self) -> impl Iterator<Item = (&str, &Problem)> {
        self.hosts
            .iter()
            .flat_map(|(id, h)| h.problems.iter().map(move |p| (id.as_str(), p)))
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hosts.is_empty() {
            writeln!(f, "no records")?;
        }
        for (id, h) in &self.hosts {
            let range = match (h.first_seq, h.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..={b}"),
                _ => "no seq".to_owned(),
            };
            let verdict = if h.problems.is_empty() {
                "OK"
            } else {
                "FAILED"
            };
            writeln!(
                f,
                "host {} ({id}): {} records, {range}: {verdict}",
                h.name, h.records
            )?;
            match &h.proven_to {
                Some(p) => writeln!(
                    f,
                    "  proven to seq {} at {}",
                    p.seq,
                    p.time.as_deref().unwrap_or("an unknown time")
                )?,
                None => writeln!(f, "  proven to: nothing (no record verified)")?,
            }
            if let Some(b) = &h.last_heartbeat {
                writeln!(
                    f,
                    "  last heartbeat: seq {} at {} (every {}s)",
                    b.seq,
                    b.time.as_deref().unwrap_or("an unknown time"),
                    b.interval_s
                )?;
            }
            for p in &h.problems {
                writeln!(f, "  {p}")?;
            }
            for n in &h.notes {
                writeln!(f, "  note: {n}")?;
            }
        }
        for m in &self.malformed {
            writeln!(f, "line {}: {}", m.line, m.reason)?;
        }
        Ok(())
    }
}
