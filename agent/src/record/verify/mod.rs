//! Verification of sealed records, as `debugmon verify` runs it over a
//! file, stdin or the JetStream stream: per host, it reports gaps, reorders, duplicates,
//! edited records (hash mismatch), broken chain links (prev_hash) and bad
//! signatures, with the seqs involved; and, for hosts that send heartbeats,
//! the last one and any silence ([`silence`]): what a stopped or frozen
//! agent leaves, since no chain can show records never written.
//!
//! Keys ([`trust`]): `--key` (hex, repeatable) pins the public keys for
//! every host; otherwise the trusted-keys file names each host's keys, and
//! a host signing with any other key (its own forged one, or another
//! host's) fails. Only with `--trust-on-first-use` is a host the file does
//! not know judged by the key its `agent` started records carry
//! (`detail.public_key`), which proves the chain is intact and
//! self-consistent but not who wrote it. Records cut from the *end* leave
//! no hole in a hash chain; heartbeats and the closing `stopped` record
//! make a cut end visible (see [`silence`]), and the report says up to
//! which record and time each chain is proven.

mod parse;
mod report;
mod silence;
pub mod trust;

use std::{
    collections::BTreeMap,
    io::{self, BufRead},
};

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
pub use report::{Heartbeat, HostReport, Malformed, Problem, Proven, VerifyReport};
use thiserror::Error;

use self::{
    parse::{Parsed, parse},
    silence::Mark,
    trust::{Trust, TrustedKeys},
};
use super::{canonical, seal::GENESIS_HASH};

#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("reading records from {what}")]
    Read {
        what: String,
        #[source]
        io_error: io::Error,
    },
    #[error("public key {key:?}: {reason}")]
    Key { key: String, reason: String },
}

/// Parses a hex Ed25519 public key.
pub fn parse_key(hex_key: &str) -> Result<VerifyingKey, VerifyError> {
    let bad = |reason: String| VerifyError::Key {
        key: hex_key.to_owned(),
        reason,
    };
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .map_err(|e| bad(e.to_string()))?
        .try_into()
        .map_err(|_| bad("not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))
}

#[derive(Debug)]
enum Sig {
    /// No `sig` member: the next signed record it links to vouches for it.
    Absent,
    Malformed,
    Present(Signature),
}

#[derive(Debug)]
struct Rec {
    seq: u64,
    hash: String,
    prev_hash: String,
    digest: [u8; 32],
    sig: Sig,
    /// `chain` member: (start, prev_seq, skipped range).
    declared_prev: Option<u64>,
    skipped: Option<(u64, u64)>,
    /// Its time, boot and agent event, for silence.
    mark: Mark,
}

#[derive(Debug, Default)]
struct HostState {
    name: String,
    arrivals: Vec<Rec>,
    /// (seq of the start record, hex key).
    keys: Vec<(u64, String)>,
    /// The `boot_id`s seen, each once: records hold an index.
    boots: Vec<String>,
    problems: Vec<Problem>,
}

/// Incremental verifier: feed lines, then [`Verifier::finish`].
#[derive(Debug, Default)]
pub struct Verifier {
    pinned: Vec<VerifyingKey>,
    /// The trusted-keys file, and whether unknown hosts are trusted on
    /// first use (`None`: `--key`, or first use for every host).
    file: Option<(TrustedKeys, bool)>,
    /// Where the input counts as ending, Unix ns: `--now`, else the newest
    /// record in the input.
    now_ns: Option<i64>,
    hosts: BTreeMap<String, HostState>,
    malformed: Vec<Malformed>,
    lines: u64,
}

impl Verifier {
    /// `keys` pinned for every host (empty: each host by its start
    /// records, trust on first use).
    pub fn new(keys: &[String]) -> Result<Self, VerifyError> {
        Self::with_trust(if keys.is_empty() {
            Trust::FirstUse
        } else {
            Trust::Pinned(keys.to_vec())
        })
    }

    pub fn with_trust(trust: Trust) -> Result<Self, VerifyError> {
        Ok(match trust {
            Trust::Pinned(keys) => Self {
                pinned: keys
                    .iter()
                    .map(|k| parse_key(k))
                    .collect::<Result<_, _>>()?,
                ..Self::default()
            },
            Trust::File { keys, tofu } => Self {
                file: Some((keys, tofu)),
                ..Self::default()
            },
            Trust::FirstUse => Self::default(),
        })
    }

    /// Judges the end of each chain against this time (Unix ns) instead of
    /// the newest record in the input.
    #[must_use]
    pub fn with_now(mut self, now_ns: Option<i64>) -> Self {
        self.now_ns = now_ns;
        self
    }

    /// Feeds every line of `r`.
    pub fn read(&mut self, r: impl BufRead, what: &str) -> Result<(), VerifyError> {
        read_lines(r, what, self)
    }

    /// Feeds one record (a JSON object, trailing newline optional).
    pub fn push_line(&mut self, line: &[u8]) {
        self.lines += 1;
        let line_no = self.lines;
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        match parse(trimmed) {
            Ok(Parsed {
                host,
                name,
                mut rec,
                key,
                boot_id,
            }) => {
                let h = self.hosts.entry(host).or_default();
                if h.name.is_empty() {
                    h.name = name;
                }
                if let Some(k) = key {
                    h.keys.push((rec.seq, k));
                }
                rec.mark.boot = h.intern_boot(boot_id);
                h.arrivals.push(rec);
            }
            Err(reason) => self.malformed.push(Malformed {
                line: line_no,
                reason,
            }),
        }
    }

    /// Checks everything fed so far.
    pub fn finish(self) -> VerifyReport {
        // Where the input ends, on wall time (the only clock hosts share):
        // a host whose records stop well before it went silent.
        let newest_ns = self.now_ns.or_else(|| {
            self.hosts
                .values()
                .flat_map(|h| h.arrivals.iter().filter_map(|r| r.mark.time_ns))
                .max()
        });
        let mut hosts = BTreeMap::new();
        for (id, mut h) in self.hosts {
            let (pinned, mut notes) = match &self.file {
                None => (self.pinned.clone(), Vec::new()),
                Some((file, tofu)) => trusted_for(&mut h, file, *tofu),
            };
            let mut report = check_host(h, &pinned, newest_ns);
            report.notes.append(&mut notes);
            hosts.insert(id, report);
        }
        VerifyReport {
            hosts,
            malformed: self.malformed,
        }
    }
}

/// What takes records one line at a time: the [`Verifier`], and readers
/// that verify as they read (`review`), so every source is read once.
pub trait LineSink {
    fn push_line(&mut self, line: &[u8]);
}

impl LineSink for Verifier {
    fn push_line(&mut self, line: &[u8]) {
        Verifier::push_line(self, line);
    }
}

/// Feeds every line of `r` (`what` names it in errors) to `sink`.
pub fn read_lines(
    mut r: impl BufRead,
    what: &str,
    sink: &mut impl LineSink,
) -> Result<(), VerifyError> {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|io_error| VerifyError::Read {
                what: what.to_owned(),
                io_error,
            })?;
        if n == 0 {
            return Ok(());
        }
        sink.push_line(&buf);
    }
}

/// The keys a host's signatures must verify with, from the trusted-keys
/// file: its own. A start record announcing any other key is a problem
/// (naming the host the key belongs to, if any). A host the file does not
/// know is a problem too, unless `tofu`: then its start records' keys are
/// used, and a note says the host was trusted on first use.
fn trusted_for(
    h: &mut HostState,
    file: &TrustedKeys,
    tofu: bool,
) -> (Vec<VerifyingKey>, Vec<String>) {
    let Some(keys) = file.keys_of(&h.name) else {
        if tofu {
            return (
                Vec::new(),
                vec![format!(
                    "host {:?} is not in the trusted-keys file: its start record's key was trusted on first use",
                    h.name
                )],
            );
        }
        // The start records' keys still check the chain's own
        // consistency; the host itself is not trusted.
        h.problems.push(Problem::UnknownHost {
            host: h.name.clone(),
        });
        return (Vec::new(), Vec::new());
    };
    for (seq, k) in &h.keys {
        if !keys.iter().any(|t| t.eq_ignore_ascii_case(k)) {
            h.problems.push(Problem::UntrustedKey {
                seq: *seq,
                key: k.clone(),
                owner: file.owner_of(k).map(str::to_owned),
            });
        }
    }
    (
        keys.iter().filter_map(|k| parse_key(k).ok()).collect(),
        Vec::new(),
    )
}

impl HostState {
    fn intern_boot(&mut self, boot_id: String) -> u32 {
        let i = match self.boots.iter().position(|b| *b == boot_id) {
            Some(i) => i,
            None => {
                self.boots.push(boot_id);
                self.boots.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(u32::MAX)
    }
}

fn check_host(mut h: HostState, pinned: &[VerifyingKey], newest_ns: Option<i64>) -> HostReport {
    let mut problems = std::mem::take(&mut h.problems);
    let mut notes = Vec::new();
    // Arrival order: duplicates, conflicts, reorders.
    let mut by_seq: BTreeMap<u64, usize> = BTreeMap::new();
    let mut max_seq = 0;
    for (i, r) in h.arrivals.iter().enumerate() {
        if let Some(&j) = by_seq.get(&r.seq) {
            problems.push(if h.arrivals[j].hash == r.hash {
                Problem::Duplicate { seq: r.seq }
            } else {
                Problem::Conflict { seq: r.seq }
            });
            continue;
        }
        if r.seq < max_seq {
            problems.push(Problem::Reordered {
                seq: r.seq,
                after: max_seq,
            });
        }
        max_seq = max_seq.max(r.seq);
        by_seq.insert(r.seq, i);
    }
    // Content: hash and signature of every record.
    let keys: Vec<(u64, Option<VerifyingKey>)> = h
        .keys
        .iter()
        .map(|(s, k)| (*s, parse_key(k).ok()))
        .collect();
    if pinned.is_empty() && keys.is_empty() {
        problems.push(Problem::NoKey);
    }
    let mut signed = std::collections::BTreeSet::new();
    for &i in by_seq.values() {
        let r = &h.arrivals[i];
        if hex::encode(r.digest) != r.hash {
            problems.push(Problem::HashMismatch { seq: r.seq });
        }
        let good = match &r.sig {
            Sig::Absent => continue,
            Sig::Malformed => false,
            Sig::Present(sig) if !pinned.is_empty() => {
                pinned.iter().any(|k| k.verify(&r.digest, sig).is_ok())
            }
            Sig::Present(sig) => {
                // The key of the latest start record at or before this seq
                // (the first one for records before any).
                let key = keys
                    .iter()
                    .rev()
                    .find(|(s, _)| *s <= r.seq)
                    .or(keys.first());
                match key {
                    Some((_, Some(k))) => k.verify(&r.digest, sig).is_ok(),
                    Some((_, None)) => false,
                    None => true, // NoKey already reported
                }
            }
        };
        if good {
            signed.insert(r.seq);
        } else {
            problems.push(Problem::BadSignature { seq: r.seq });
        }
    }
    // Sequence: gaps and links, in seq order.
    let ordered: Vec<&Rec> = by_seq.values().map(|&i| &h.arrivals[i]).collect();
    if let Some(first) = ordered.first() {
        if first.seq == 1 && first.prev_hash != GENESIS_HASH {
            problems.push(Problem::BrokenLink {
                seq: 1,
                prev_seq: 0,
            });
        }
        if first.seq > 1 {
            notes.push(format!(
                "starts at seq {} (earlier records are not in the input)",
                first.seq
            ));
        }
    }
    // Whether each record links to the one before it in `ordered`.
    let mut linked = vec![false; ordered.len()];
    // A restart after a lost tip links back to its declared `prev_seq`,
    // past records released before the loss.
    let mut link_back: Vec<Option<u64>> = vec![None; ordered.len()];
    for (k, w) in ordered.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        let before = problems.len();
        let declared = match (b.declared_prev, b.skipped) {
            (Some(p), Some((from, to))) if to + 1 == b.seq && from == p + 1 => Some((p, from, to)),
            _ => None,
        };
        let expect_prev = declared.map_or(b.seq - 1, |(p, _, _)| p);
        if a.seq < expect_prev {
            problems.push(Problem::Gap {
                from: a.seq + 1,
                to: expect_prev,
            });
        } else if a.seq == expect_prev {
            if b.prev_hash != a.hash {
                problems.push(Problem::BrokenLink {
                    seq: b.seq,
                    prev_seq: a.seq,
                });
            } else if let Some((_, from, to)) = declared {
                notes.push(format!(
                    "seqs {from}..={to} declared skipped by the agent after an unclean restart"
                ));
            }
        } else if let Some((p, from, to)) = declared {
            // Records of the declared range were released before a power
            // loss took the agent's tip; they chain among themselves (the
            // windows before this one checked that), and the restart links
            // back to `p`, as signed in its `chain` member.
            let target = if p == 0 {
                Some(GENESIS_HASH)
            } else {
                by_seq.get(&p).map(|&i| h.arrivals[i].hash.as_str())
            };
            link_back[k + 1] = Some(p);
            match target {
                Some(hash) if hash != b.prev_hash => problems.push(Problem::BrokenLink {
                    seq: b.seq,
                    prev_seq: p,
                }),
                found => notes.push(format!(
                    "seqs {from}..={a_seq} were released before an unclean restart that lost the agent's tip (power loss); seq {b_seq} links back to seq {p}{checked}, and seqs {next}..={to} were never used",
                    a_seq = a.seq,
                    b_seq = b.seq,
                    next = a.seq + 1,
                    checked = if found.is_some() { "" } else { " (not in the input: link not checked)" },
                )),
            }
        } else {
            problems.push(Problem::BrokenLink {
                seq: b.seq,
                prev_seq: expect_prev,
            });
        }
        linked[k + 1] = problems.len() == before;
    }
    // Unsigned records: each needs a later signed record reached through
    // unbroken links.
    let mut run: Option<(u64, u64)> = None;
    for (k, r) in ordered.iter().enumerate() {
        if let Some(p) = link_back[k] {
            // This record's signature vouches for seqs up to `p` only; the
            // released records after `p` need a signature of their own.
            if let Some((from, to)) = run {
                if to > p {
                    problems.push(Problem::Unsigned {
                        from: from.max(p + 1),
                        to,
                    });
                }
                run = (from <= p).then_some((from, to.min(p)));
            }
        } else if !linked[k]
            && let Some((from, to)) = run.take()
        {
            problems.push(Problem::Unsigned { from, to });
        }
        if signed.contains(&r.seq) {
            run = None;
        } else if matches!(r.sig, Sig::Absent) {
            run = Some(run.map_or((r.seq, r.seq), |(from, _)| (from, r.seq)));
        }
    }
    if let Some((from, to)) = run {
        problems.push(Problem::Unsigned { from, to });
    }
    let marks: Vec<Mark> = ordered.iter().map(|r| r.mark).collect();
    let last_heartbeat = judge_silence(&marks, newest_ns, &mut problems, &mut notes);
    // The last record a good signature covers, through unbroken links from
    // the start of the input: what the chain proves, and up to when.
    let proven_to = ordered
        .iter()
        .enumerate()
        .take_while(|(k, _)| *k == 0 || linked[*k] || link_back[*k].is_some())
        .filter(|(_, r)| signed.contains(&r.seq) && hex::encode(r.digest) == r.hash)
        .last()
        .map(|(_, r)| Proven {
            seq: r.seq,
            time: r.mark.time_ns.map(silence::rfc3339),
        });
    problems.sort_by_key(Problem::seq);
    let mut seen_keys: Vec<String> = Vec::new();
    for (_, k) in h.keys {
        if !seen_keys.contains(&k) {
            seen_keys.push(k);
        }
    }
    HostReport {
        name: h.name,
        records: h.arrivals.len() as u64,
        first_seq: ordered.first().map(|r| r.seq),
        last_seq: ordered.last().map(|r| r.seq),
        keys: seen_keys,
        proven_to,
        last_heartbeat,
        problems,
        notes,
    }
}

/// Silence in `marks` (one host, seq order): the longest unexplained
/// silence is a problem, any others a note, and so is a host silent at the
/// end of the input. Returns the host's last heartbeat.
fn judge_silence(
    marks: &[Mark],
    newest_ns: Option<i64>,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) -> Option<Heartbeat> {
    let judged = silence::judge(marks);
    let longest = judged
        .silences
        .iter()
        .enumerate()
        .max_by_key(|(i, s)| (s.seconds, std::cmp::Reverse(*i)));
    if let Some((i, s)) = longest {
        problems.push(Problem::Silent {
            from: s.from_seq,
            to: s.to_seq,
            seconds: s.seconds,
            interval_s: s.interval_s,
        });
        let others: Vec<String> = judged
            .silences
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| format!("{}s after seq {}", s.seconds, s.from_seq))
            .collect();
        if !others.is_empty() {
            notes.push(format!(
                "{} more silences longer than {} heartbeat intervals: {}",
                others.len(),
                silence::SILENT_AFTER,
                others.join(", ")
            ));
        }
    }
    if let (Some(end), Some(newest)) = (&judged.open_end, newest_ns)
        && let Some(seconds) = silence::end_silence(end, newest)
    {
        problems.push(Problem::EndsOpen {
            seq: end.seq,
            time: silence::rfc3339(end.time_ns),
            seconds,
            interval_s: end.interval_s,
        });
    }
    judged.last_beat.map(|b| Heartbeat {
        seq: b.seq,
        time: b.time_ns.map(silence::rfc3339),
        interval_s: b.interval_s,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;
