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
pub mod batch;
pub mod canonical;
pub mod detail;
pub mod names;
pub mod redact;
pub mod seal;
pub mod verify;

use serde::Serialize;

use self::batch::MemberAt;
pub use self::{
    batch::{Batch, Built},
    detail::{AccessDetail, ExecDetail, LostCounts},
};
use crate::{
    decide::Verdict,
    enrich::{Actor, Target},
    event::Kind,
    sys::host::{Clock, Host},
};

pub const SCHEMA: u32 = 1;

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

    /// Appends one record to `batch`, with where its members lie.
    /// `argv_clean`: see [`Built::argv_clean`]. On an error the batch is
    /// as it was.
    pub fn write_into<D: Serialize>(
        &mut self,
        batch: &mut Batch,
        ktime_ns: u64,
        parts: Parts<'_, D>,
        argv_clean: bool,
    ) -> Result<(), serde_json::Error> {
        let (start, first) = (batch.bytes.len(), batch.members.len());
        let kind = parts.kind;
        if let Err(e) = self.write_members(&mut batch.bytes, &mut batch.members, ktime_ns, parts) {
            batch.bytes.truncate(start);
            batch.members.truncate(first);
            return Err(e);
        }
        batch.records.push(Built {
            line: start..batch.bytes.len() - 1,
            members: first..batch.members.len(),
            kind,
            argv_clean,
        });
        Ok(())
    }

    /// Writes the record's object member by member, in key order (the
    /// canonical writer does each value), noting each member in `members`;
    /// on an error, the caller cuts both back.
    fn write_members<D: Serialize>(
        &mut self,
        out: &mut Vec<u8>,
        members: &mut Vec<MemberAt>,
        ktime_ns: u64,
        parts: Parts<'_, D>,
    ) -> Result<(), serde_json::Error> {
        let start = out.len();
        let mut obj = TopLevel {
            out,
            members,
            opened: false,
        };
        if let Some(actor) = parts.actor {
            obj.member("actor", actor)?;
        }
        if let Some(verdict) = parts.verdict {
            obj.member("decision", verdict)?;
        }
        obj.member("detail", &parts.detail)?;
        obj.member("host", &self.host)?;
        obj.member("kind", parts.kind.as_str())?;
        obj.member("monotonic_ns", &ktime_ns)?;
        obj.member("schema", &SCHEMA)?;
        obj.member("seq", &(self.seq + 1))?;
        if let Some(target) = parts.target {
            obj.member("target", target)?;
        }
        obj.member("time", &self.clock.rfc3339(ktime_ns))?;
        out.push(b'}');
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
}

/// A record's object while its members are written, in key order.
struct TopLevel<'a> {
    out: &'a mut Vec<u8>,
    members: &'a mut Vec<MemberAt>,
    /// The `{` is written.
    opened: bool,
}

impl TopLevel<'_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.out.push(if self.opened { b',' } else { b'{' });
        self.opened = true;
        // Keys are plain ASCII names: nothing to escape.
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        let start = self.out.len();
        canonical::writer::to_writer(self.out, value)?;
        self.members.push((key, start..self.out.len()));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
