//! The hot path, free of I/O: ring buffer bytes in, record bytes out.
//! decode -> process table -> record builder, with every event that does
//! not become a record either applied to the table or counted as lost.
//! The async driver in `agent.rs` feeds it and ships its batches.

use crate::{
    event::{self, Event},
    host::Clock,
    process::ProcessTable,
    record::{LostCounts, RecordBuilder},
};

/// Counters a status page or the stop record reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub events: u64,
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    pub records: u64,
    pub undecodable: u64,
    pub serialize_errors: u64,
}

pub struct Pipeline {
    table: ProcessTable,
    builder: RecordBuilder,
    batch: Vec<u8>,
    stats: PipelineStats,
    /// Kernel counters as last reported in a `lost` record.
    reported: LostCounts,
}

impl Pipeline {
    pub fn new(table: ProcessTable, builder: RecordBuilder) -> Self {
        Self {
            table,
            builder,
            batch: Vec::with_capacity(64 * 1024),
            stats: PipelineStats::default(),
            reported: LostCounts::default(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.builder.set_clock(clock);
    }

    /// Bytes of records waiting to be shipped.
    pub fn pending_bytes(&self) -> usize {
        self.batch.len()
    }

    /// Hands over the records built so far.
    pub fn take_batch(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.batch, Vec::with_capacity(64 * 1024))
    }

    /// Processes one ring buffer item.
    pub fn handle(&mut self, bytes: &[u8]) {
        self.stats.events += 1;
        let ev = match event::decode(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                self.stats.undecodable += 1;
                if self.stats.undecodable.is_power_of_two() {
                    tracing::debug!(error = %e, count = self.stats.undecodable, "undecodable event");
                }
                return;
            }
        };
        match ev {
            Event::Exec(e) => {
                self.stats.exec += 1;
                self.table.on_exec(&e);
                self.emit(|b, out, t| b.exec(out, &e, t));
            }
            Event::Fork(f) => {
                self.stats.fork += 1;
                self.table.on_fork(&f);
            }
            Event::Exit(x) => {
                self.stats.exit += 1;
                self.table.on_exit(&x);
            }
        }
    }

    fn emit(
        &mut self,
        f: impl FnOnce(&mut RecordBuilder, &mut Vec<u8>, &ProcessTable) -> serde_json::Result<()>,
    ) {
        let mark = self.batch.len();
        match f(&mut self.builder, &mut self.batch, &self.table) {
            Ok(()) => self.stats.records += 1,
            Err(e) => {
                // Never leave half a record in the stream.
                self.batch.truncate(mark);
                self.stats.serialize_errors += 1;
                tracing::error!(error = %e, "record serialization failed");
            }
        }
    }

    /// Forgets processes whose grace period ended.
    pub fn reap(&mut self, now_ns: u64) {
        self.table.reap(now_ns);
    }

    /// Emits a `lost` record if the kernel's drop counters (cumulative, as
    /// read from the map) or the undecodable count moved since the last one.
    pub fn report_lost(&mut self, now_ns: u64, kernel: LostCounts) {
        let cumulative = LostCounts {
            undecodable: self.stats.undecodable,
            ..kernel
        };
        let delta = LostCounts {
            exec: cumulative.exec.saturating_sub(self.reported.exec),
            fork: cumulative.fork.saturating_sub(self.reported.fork),
            exit: cumulative.exit.saturating_sub(self.reported.exit),
            undecodable: cumulative
                .undecodable
                .saturating_sub(self.reported.undecodable),
        };
        if delta.total() == 0 {
            return;
        }
        tracing::warn!(
            exec = delta.exec,
            fork = delta.fork,
            exit = delta.exit,
            undecodable = delta.undecodable,
            "events lost before they became records"
        );
        self.reported = cumulative;
        self.emit(|b, out, _| b.lost(out, now_ns, delta, cumulative));
    }

    /// Appends an `agent` record.
    pub fn agent_record<D: serde::Serialize>(&mut self, now_ns: u64, detail: D) {
        self.emit(|b, out, _| b.agent(out, now_ns, detail));
    }
}

#[cfg(test)]
mod tests {
    use agent_common::Creds;
    use serde_json::Value;

    use super::*;
    use crate::{
        event::{ExecInfo, ExitInfo, ForkInfo, encode},
        host::Host,
        process::ProcessEntry,
    };

    fn pipeline() -> Pipeline {
        let mut table = ProcessTable::new(1000, 1_000, 1);
        table.insert(ProcessEntry {
            pid: 1,
            start_ns: 0,
            ppid: 0,
            comm: b"init".to_vec(),
            exe: b"/sbin/init".to_vec(),
            uid: 0,
            exited_ns: None,
        });
        let host = Host {
            name: "h".into(),
            id: "i".into(),
            boot_id: "b".into(),
        };
        Pipeline::new(table, RecordBuilder::new(host, Clock::sample(), 16))
    }

    fn lines(bytes: &[u8]) -> Vec<Value> {
        bytes
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn fork(pid: u32, parent: u32) -> Vec<u8> {
        encode(&Event::Fork(ForkInfo {
            ktime_ns: 10,
            flags: 0,
            pid,
            start_ns: u64::from(pid),
            parent_tgid: parent,
            parent_start_ns: 0,
            creds: Creds::default(),
            cgroup_id: 0,
            comm: b"sh".to_vec(),
        }))
    }

    fn exec(pid: u32, ppid: u32, path: &str) -> Vec<u8> {
        encode(&Event::Exec(ExecInfo {
            ktime_ns: 20,
            flags: 0,
            pid,
            tgid: pid,
            start_ns: u64::from(pid),
            ppid,
            old_pid: pid,
            creds: Creds::default(),
            cgroup_id: 0,
            comm: path.rsplit('/').next().unwrap().as_bytes().to_vec(),
            filename: path.as_bytes().to_vec(),
            argv: vec![path.as_bytes().to_vec()],
            argv_truncated: false,
            argv_total_len: 0,
        }))
    }

    #[test]
    fn fork_exec_exit_sequence_builds_ancestry_and_cleans_up() {
        let mut p = pipeline();
        p.handle(&fork(100, 1));
        p.handle(&exec(100, 1, "/bin/bash"));
        p.handle(&fork(200, 100));
        p.handle(&exec(200, 100, "/usr/bin/make"));
        p.handle(&fork(300, 200));
        // The parent exits before the child's exec is processed.
        p.handle(&encode(&Event::Exit(ExitInfo {
            ktime_ns: 30,
            pid: 200,
            start_ns: 200,
            exit_code: 0,
        })));
        p.handle(&exec(300, 200, "/usr/bin/cc"));
        let recs = lines(&p.take_batch());
        assert_eq!(recs.len(), 3, "one record per exec, none for fork/exit");
        let anc: Vec<u64> = recs[2]["actor"]["ancestry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(anc, vec![200, 100, 1]);
        assert_eq!(recs[2]["actor"]["ancestry"][0]["exe"], "/usr/bin/make");
        p.reap(u64::MAX);
        assert!(p.table().get(200).is_none());
        assert!(p.table().get(300).is_some());
    }

    #[test]
    fn garbage_is_counted_and_reported_as_lost() {
        let mut p = pipeline();
        p.handle(&[1, 2, 3]);
        p.handle(&[]);
        assert_eq!(p.stats().undecodable, 2);
        assert!(p.take_batch().is_empty());
        p.report_lost(5, LostCounts::default());
        let recs = lines(&p.take_batch());
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["kind"], "lost");
        assert_eq!(recs[0]["detail"]["counts"]["undecodable"], 2);
    }

    #[test]
    fn lost_records_carry_deltas_and_only_when_counters_move() {
        let mut p = pipeline();
        let k = |exec| LostCounts {
            exec,
            ..Default::default()
        };
        p.report_lost(1, k(0));
        assert!(p.take_batch().is_empty(), "nothing lost, no record");
        p.report_lost(2, k(5));
        p.report_lost(3, k(5));
        p.report_lost(4, k(12));
        let recs = lines(&p.take_batch());
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["detail"]["counts"]["exec"], 5);
        assert_eq!(recs[1]["detail"]["counts"]["exec"], 7);
        assert_eq!(recs[1]["detail"]["cumulative"]["exec"], 12);
    }
}
