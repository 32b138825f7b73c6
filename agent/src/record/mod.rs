//! Records (docs/records.md): one JSON object per line, `schema` versioned,
//! written in the canonical encoding the seal hashes. Built here from
//! parts the earlier stages made (the enriched actor and target, the
//! verdict, the detail), then redacted and sealed on the delivery thread,
//! and checked again by `debugmon verify`:
//!
//! - [`RecordBuilder`]: numbering and writing one record; [`alert`]: which
//!   records are alerts, at what severity
//! - [`detail`]: the `detail` member of each kind; [`names`]: kernel
//!   numbers to names
//! - [`canonical`]: the encoding hashes are computed over
//! - [`redact`]: secrets out of argv before sealing
//! - [`seal`]: seq, hash chain and signature
//! - [`verify`]: checking sealed records (chain, signatures, gaps)

pub mod alert;
pub mod canonical;
pub mod detail;
pub mod names;
pub mod redact;
pub mod seal;
pub mod verify;

use serde::Serialize;

use self::detail::LostDetail;
pub use self::detail::{AccessDetail, ExecDetail, LostCounts};
use crate::{
    decide::Verdict,
    enrich::{Actor, Target},
    event::Kind,
    sys::host::{Clock, Host},
};

pub const SCHEMA: u32 = 1;

/// Fields in key order, like every record struct: the canonical writer
/// streams members that arrive sorted and buffers the rest.
#[derive(Serialize)]
struct Record<'a, D: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a Verdict>,
    detail: D,
    host: &'a Host,
    kind: &'static str,
    monotonic_ns: u64,
    schema: u32,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a Target>,
    time: String,
}

/// The parts of one record besides its number, time and host.
pub struct Parts<'a, D: Serialize> {
    pub kind: Kind,
    pub actor: Option<&'a Actor>,
    pub target: Option<&'a Target>,
    pub detail: D,
    pub verdict: Option<&'a Verdict>,
}

impl<D: Serialize> Parts<'_, D> {
    /// A record without actor, target or decision (`lost`, `policy`,
    /// `grant`, `agent`).
    pub fn note(kind: Kind, detail: D) -> Self {
        Self {
            kind,
            actor: None,
            target: None,
            detail,
            verdict: None,
        }
    }
}

/// Numbers records and writes them, one per line.
pub struct RecordBuilder {
    host: Host,
    clock: Clock,
    seq: u64,
    /// Kind of the last record written, for the per-kind metrics.
    last_kind: Option<Kind>,
}

impl RecordBuilder {
    pub fn new(host: Host, clock: Clock) -> Self {
        Self {
            host,
            clock,
            seq: 0,
            last_kind: None,
        }
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Records emitted so far.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Kind of the last record written (`None` before the first).
    pub fn last_kind(&self) -> Option<Kind> {
        self.last_kind
    }

    /// Appends one record at boot time `ktime_ns`.
    pub fn write<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        ktime_ns: u64,
        parts: Parts<'_, D>,
    ) -> Result<(), serde_json::Error> {
        let rec = Record {
            schema: SCHEMA,
            seq: self.seq + 1,
            time: self.clock.rfc3339(ktime_ns),
            monotonic_ns: ktime_ns,
            host: &self.host,
            kind: parts.kind.as_str(),
            actor: parts.actor,
            target: parts.target,
            detail: parts.detail,
            decision: parts.verdict,
        };
        let start = out.len();
        canonical::writer::to_writer(out, &rec)?;
        // The sealer hashes these bytes as they are: in debug builds (the
        // tests), check them against the reference encoder.
        #[cfg(debug_assertions)]
        {
            let v: serde_json::Value =
                serde_json::from_slice(&out[start..]).expect("invariant: a record is JSON");
            debug_assert_eq!(
                canonical::to_vec(&v),
                &out[start..],
                "record builder output is not canonical"
            );
        }
        #[cfg(not(debug_assertions))]
        let _ = start;
        out.push(b'\n');
        self.seq += 1;
        self.last_kind = Some(parts.kind);
        Ok(())
    }

    /// Appends a record without actor, target or decision (`lost`,
    /// `policy`, `grant`, `agent`).
    pub fn note<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        kind: Kind,
        detail: D,
    ) -> Result<(), serde_json::Error> {
        self.write(out, now_ns, Parts::note(kind, detail))
    }

    /// Appends a `lost` record: `counts` since the last one, and the totals.
    pub fn lost(
        &mut self,
        out: &mut Vec<u8>,
        now_ns: u64,
        counts: LostCounts,
        cumulative: LostCounts,
    ) -> Result<(), serde_json::Error> {
        self.note(out, now_ns, Kind::Lost, LostDetail::new(counts, cumulative))
    }
}

#[cfg(test)]
mod tests;
