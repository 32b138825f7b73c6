//! Records the spool could not keep, and the `lost` alert that says so.
//!
//! Two ways a sealed record can miss the spool: the write failed (the disk
//! under the spool is full, or an I/O error), or the agent was killed in
//! the middle of the write and the next start cut the torn frame. Either
//! way the record never reaches NATS. The delivery thread keeps going (the
//! record still goes to the local sinks) and counts it here; the next
//! group carries a `lost` record with `counts.spool_unwritable` /
//! `counts.spool_torn`, as an alert. The count is only taken as reported
//! once that `lost` record itself is in the spool: while the disk stays
//! full, every attempt fails and the count keeps growing until one lands.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::{
    record::{SCHEMA, seal::Unsealed},
    sys::host::{self, Clock},
};

/// Least time between two attempts to report while the spool keeps failing:
/// each attempt is a record on the local sinks too.
const RETRY: Duration = Duration::from_secs(1);

/// Losses not yet reported in a spooled `lost` record.
#[derive(Debug, Default, Clone)]
pub(super) struct Pending {
    unwritable: u64,
    seqs: Option<(u64, u64)>,
    error: Option<String>,
    torn_frames: u64,
    torn_bytes: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.unwritable == 0 && self.torn_frames == 0
    }

    fn merge(&mut self, later: Self) {
        self.unwritable += later.unwritable;
        self.seqs = match (self.seqs, later.seqs) {
            (Some((a, _)), Some((_, b))) => Some((a, b)),
            (a, b) => a.or(b),
        };
        if later.error.is_some() {
            self.error = later.error;
        }
        self.torn_frames += later.torn_frames;
        self.torn_bytes += later.torn_bytes;
    }
}

/// Cumulative counts and what is still to report.
#[derive(Debug, Default)]
pub(super) struct SpoolLoss {
    pending: Pending,
    /// Since start, for `cumulative` and the metrics.
    pub(super) unwritable_total: u64,
    pub(super) torn_total: u64,
    last_try: Option<Instant>,
    host: Option<Value>,
}

impl SpoolLoss {
    /// Frames the spool cut when it was opened (a kill during a write).
    pub(super) fn torn_at_open(frames: u64, bytes: u64) -> Self {
        Self {
            pending: Pending {
                torn_frames: frames,
                torn_bytes: bytes,
                ..Pending::default()
            },
            torn_total: frames,
            ..Self::default()
        }
    }

    /// Records `first..=last` (`n` of them) were sealed but not spooled.
    pub(super) fn unwritable(&mut self, first: u64, last: u64, n: u64, error: String) {
        self.unwritable_total += n;
        self.pending.merge(Pending {
            unwritable: n,
            seqs: Some((first, last)),
            error: Some(error),
            ..Pending::default()
        });
    }

    /// Learns the host object from the builder's records (the delivery
    /// thread has no other source, and a `lost` record needs one).
    pub(super) fn learn_host(&mut self, records: &[Unsealed<'_>]) {
        if self.host.is_some() {
            return;
        }
        self.host = records.iter().find_map(|r| match r {
            Unsealed::Map(m) => m.get("host").cloned(),
            Unsealed::Canonical { members, .. } => members
                .iter()
                .find(|(k, _)| k == "host")
                .and_then(|(_, raw)| serde_json::from_slice(raw).ok()),
        });
    }

    /// The `lost` record to put first in the next group, when something
    /// is unreported and the last attempt is not too recent. The counts
    /// move into the returned [`Pending`]: give it back with
    /// [`Self::restore`] if that record did not reach the spool.
    /// `now`: whatever the last attempt (a group with the agent's own
    /// records, such as the stop record, after which none may come).
    pub(super) fn report(&mut self, now: bool) -> Option<(Map<String, Value>, Pending)> {
        if self.pending.is_empty() || (!now && self.last_try.is_some_and(|t| t.elapsed() < RETRY)) {
            return None;
        }
        let host = self.host.clone()?;
        self.last_try = Some(Instant::now());
        let p = std::mem::take(&mut self.pending);
        let now = host::boottime_ns();
        let mut reasons = Vec::new();
        if p.unwritable > 0 {
            let (a, b) = p.seqs.unwrap_or_default();
            reasons.push(format!(
                "{} sealed records (seq {a}..={b}) could not be written to the spool ({}) and will not reach NATS",
                p.unwritable,
                p.error.as_deref().unwrap_or("write failed")
            ));
        }
        if p.torn_frames > 0 {
            reasons.push(format!(
                "{} record(s) torn by a kill during a spool write were cut at start",
                p.torn_frames
            ));
        }
        let rec = json!({
            "schema": SCHEMA,
            "time": Clock::sample().rfc3339(now),
            "monotonic_ns": now,
            "host": host,
            "kind": "lost",
            "detail": {
                "counts": {"spool_unwritable": p.unwritable, "spool_torn": p.torn_frames},
                "total": p.unwritable + p.torn_frames,
                "cumulative": {
                    "spool_unwritable": self.unwritable_total,
                    "spool_torn": self.torn_total,
                },
                "spool": {
                    "unwritable_seqs": p.seqs.map(|(a, b)| vec![a, b]),
                    "error": p.error,
                    "torn_bytes": p.torn_bytes,
                },
            },
            "decision": {
                "action": "alert",
                "enforced": false,
                "rule": "spool-loss",
                "severity": "high",
                "reason": reasons.join("; "),
                "grant_id": null,
            },
        });
        let Value::Object(m) = rec else {
            self.restore(p);
            return None;
        };
        Some((m, p))
    }

    /// A group reached the spool: the disk took writes again, so the next
    /// group may report at once.
    pub(super) fn spooled(&mut self) {
        self.last_try = None;
    }

    /// The `lost` record did not reach the spool: its counts wait for the next.
    pub(super) fn restore(&mut self, p: Pending) {
        let later = std::mem::replace(&mut self.pending, p);
        self.pending.merge(later);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host() -> SpoolLoss {
        let mut l = SpoolLoss::default();
        let mut m = Map::new();
        m.insert("host".into(), json!({"name": "h"}));
        l.learn_host(&[Unsealed::Map(m)]);
        l
    }

    #[test]
    fn nothing_to_report_makes_no_record() {
        assert!(with_host().report(true).is_none());
    }

    #[test]
    fn a_failed_report_keeps_its_counts_for_the_next() {
        let mut l = with_host();
        l.unwritable(5, 9, 5, "No space left on device".into());
        let (rec, p) = l.report(false).unwrap();
        assert_eq!(rec["detail"]["counts"]["spool_unwritable"], 5);
        assert_eq!(rec["decision"]["action"], "alert");
        l.restore(p);
        l.unwritable(10, 12, 3, "No space left on device".into());
        assert!(l.report(false).is_none(), "not again within a second");
        let (rec, _) = l.report(true).unwrap();
        assert_eq!(rec["detail"]["counts"]["spool_unwritable"], 8);
        assert_eq!(rec["detail"]["spool"]["unwritable_seqs"], json!([5, 12]));
        assert_eq!(rec["detail"]["cumulative"]["spool_unwritable"], 8);
        assert!(l.report(true).is_none(), "reported once");
    }

    #[test]
    fn torn_frames_at_open_are_reported() {
        let mut l = SpoolLoss::torn_at_open(1, 37);
        l.learn_host(&[Unsealed::Map(
            [("host".to_owned(), json!({"name": "h"}))]
                .into_iter()
                .collect(),
        )]);
        let (rec, _) = l.report(false).unwrap();
        assert_eq!(rec["detail"]["counts"]["spool_torn"], 1);
        assert_eq!(rec["detail"]["total"], 1);
        assert_eq!(rec["detail"]["spool"]["torn_bytes"], 37);
    }
}
