//! The heartbeat: an `agent` record every `agent.heartbeat_secs`, so that
//! an agent stopped (SIGSTOP), frozen (cgroup.freeze) or given up on by
//! systemd shows in the stream as silence, which `debugmon tail` and
//! `debugmon verify` report. [`Cadence`] decides when one is due from
//! explicit times, so it is tested without a kernel; the housekeeping tick
//! asks it once a second. Also the detail of the other `agent` record the
//! tick writes, the signing `checkpoint`.

use std::time::Duration;

use serde_json::{Value, json};

use super::pipeline::PipelineStats;
use crate::record::LostCounts;

const NS_PER_S: u64 = 1_000_000_000;

/// When heartbeats are due, on the boot-time clock (ns): every `every`
/// after the agent's start record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cadence {
    every_ns: u64,
    started_ns: u64,
    next_ns: u64,
}

impl Cadence {
    /// `started_ns`: when the start record was written, the origin of
    /// `uptime_s` and of the schedule.
    pub(super) fn new(every: Duration, started_ns: u64) -> Self {
        // A zero interval is "off" in the config and never gets here; the
        // floor keeps a bad value from making every tick a heartbeat.
        let every_ns = u64::try_from(every.as_nanos())
            .unwrap_or(u64::MAX)
            .max(NS_PER_S);
        Self {
            every_ns,
            started_ns,
            next_ns: started_ns.saturating_add(every_ns),
        }
    }

    /// Whether a heartbeat is due at `now_ns`; when it is, the next one is
    /// scheduled.
    pub(super) fn due(&mut self, now_ns: u64) -> bool {
        if now_ns < self.next_ns {
            return false;
        }
        // On time, the schedule keeps its phase: a tick that runs a little
        // late does not push every later heartbeat back with it. More than
        // an interval behind (the agent was stopped or frozen), it starts
        // over from now: one heartbeat says "back", not a burst of them.
        let next = self.next_ns.saturating_add(self.every_ns);
        self.next_ns = if next > now_ns {
            next
        } else {
            now_ns.saturating_add(self.every_ns)
        };
        true
    }

    /// The interval in whole seconds, as records carry it.
    pub(super) fn interval_s(&self) -> u64 {
        self.every_ns / NS_PER_S
    }

    /// The heartbeat record's `detail` at `now_ns`: the interval (what a
    /// reader waits before calling the host silent), the agent's uptime,
    /// and its running counters, so a reader sees it alive and working.
    /// `records` counts this record too, as the `stopped` record does;
    /// `lost` is the total of everything the `lost` records count.
    pub(super) fn detail(&self, now_ns: u64, stats: &PipelineStats, lost: LostCounts) -> Value {
        let lost = LostCounts {
            undecodable: stats.undecodable,
            ..lost
        };
        json!({
            "event": "heartbeat",
            "interval_s": self.interval_s(),
            "uptime_s": now_ns.saturating_sub(self.started_ns) / NS_PER_S,
            "events": stats.events,
            "records": stats.records + 1,
            "lost": lost.total(),
        })
    }
}

/// The `checkpoint` record's `detail`: the tip of the chain has waited for
/// a signature since `since_ns` (boot time), and this signed record
/// vouches for it and every unsigned record before it.
pub(super) fn checkpoint_detail(since_ns: u64) -> Value {
    json!({ "event": "checkpoint", "unsigned_since_ns": since_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_S;

    /// Heartbeats sent by a tick every second from `from` to `to` (in
    /// seconds after start), each tick `late_ns` after the whole second.
    fn beats(c: &mut Cadence, from: u64, to: u64, late_ns: u64) -> Vec<u64> {
        (from..=to)
            .filter(|t| c.due(t * S + late_ns))
            .collect::<Vec<_>>()
    }

    #[test]
    fn one_heartbeat_per_interval_from_the_start() {
        let mut c = Cadence::new(Duration::from_secs(5), 0);
        assert_eq!(beats(&mut c, 0, 21, 1_000), [5, 10, 15, 20]);
        assert!(!c.due(20 * S + 2_000), "not twice in one interval");
        let mut c = Cadence::new(Duration::from_secs(1), 0);
        assert_eq!(beats(&mut c, 0, 4, 0), [1, 2, 3, 4]);
    }

    #[test]
    fn a_late_tick_does_not_shift_the_schedule() {
        let mut c = Cadence::new(Duration::from_secs(5), 0);
        // The tick at 5 s runs 0.9 s late; the next heartbeat is still due
        // at 10 s, not 10.9 s.
        assert!(c.due(5 * S + 900_000_000));
        assert!(!c.due(9 * S + 999_999_999));
        assert!(c.due(10 * S));
        // Ticks that land just before the due time make one interval a
        // tick longer, never every interval.
        let mut c = Cadence::new(Duration::from_secs(5), 1_000);
        assert_eq!(beats(&mut c, 1, 21, 0), [6, 11, 16, 21]);
    }

    #[test]
    fn after_a_freeze_one_heartbeat_then_the_interval_again() {
        let mut c = Cadence::new(Duration::from_secs(5), 0);
        assert!(c.due(5 * S));
        // Frozen from 6 s to 60 s: the first tick after it sends one
        // heartbeat, and the next is an interval later, not at 61 s.
        assert!(c.due(60 * S));
        assert_eq!(beats(&mut c, 61, 70, 0), [65, 70]);
    }

    #[test]
    fn the_detail_carries_interval_uptime_and_counters() {
        let c = Cadence::new(Duration::from_secs(5), 2 * S);
        let stats = PipelineStats {
            events: 120,
            records: 40,
            undecodable: 1,
            ..PipelineStats::default()
        };
        let lost = LostCounts {
            exec: 3,
            spool_shed: 2,
            ..LostCounts::default()
        };
        assert_eq!(
            c.detail(12 * S + 500, &stats, lost),
            json!({"event": "heartbeat", "interval_s": 5, "uptime_s": 10,
                "events": 120, "records": 41, "lost": 6})
        );
    }

    /// An `agent` record with `detail`, as the pipeline builds it and the
    /// sealer seals it, checked against docs/record.schema.json.
    fn sealed_agent_record(detail: Value) -> Value {
        use crate::{
            enrich::Enricher,
            event::Kind,
            process::ProcessTable,
            record::{RecordBuilder, seal::Sealer},
            runtime::pipeline::Pipeline,
            sys::host::{Clock, Host},
        };
        let host = Host {
            name: "h".into(),
            id: "i".into(),
            boot_id: "b".into(),
        };
        let enricher = Enricher::new(
            std::path::Path::new("/nonexistent-debugmon/etc"),
            std::path::Path::new("/nonexistent-debugmon/cgroup"),
            std::path::Path::new("/nonexistent-debugmon/proc"),
            4,
        );
        let mut p = Pipeline::new(
            ProcessTable::new(16, 1, 1),
            enricher,
            RecordBuilder::new(host, Clock::sample()),
        );
        p.note(5 * S, Kind::Agent, detail);
        let batch = p.take_batch();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sealer =
            Sealer::open(&dir.path().join("s"), &dir.path().join("k")).expect("opening the sealer");
        let sealed = sealer
            .seal_builder_line(batch.trim_ascii_end())
            .expect("sealing");
        assert_eq!(sealed.severity, None, "not an alert");
        let rec: Value = serde_json::from_slice(&sealed.line).expect("JSON");
        assert_eq!(rec["kind"], "agent");
        assert!(rec.get("decision").is_none(), "{rec}");
        assert!(rec["hash"].is_string() && rec["sig"].is_string(), "{rec}");
        // What the agent writes is what docs/record.schema.json allows.
        let schema: Value = serde_json::from_str(include_str!("../../../docs/record.schema.json"))
            .expect("the schema is JSON");
        let v = jsonschema::draft202012::new(&schema).expect("the schema compiles");
        let errors: Vec<String> = v.iter_errors(&rec).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}\n{rec:#}");
        rec
    }

    #[test]
    fn a_heartbeat_is_sealed_and_signed_and_not_an_alert() {
        let c = Cadence::new(Duration::from_secs(5), 0);
        let stats = crate::runtime::pipeline::PipelineStats::default();
        let rec = sealed_agent_record(c.detail(5 * S, &stats, LostCounts::default()));
        assert_eq!(rec["detail"]["event"], "heartbeat");
        assert_eq!(rec["detail"]["records"], 1);
    }

    #[test]
    fn a_checkpoint_is_a_signed_agent_record() {
        let rec = sealed_agent_record(checkpoint_detail(42));
        assert_eq!(rec["detail"]["event"], "checkpoint");
        assert_eq!(rec["detail"]["unsigned_since_ns"], 42);
    }
}
