//! The hot path, free of I/O: ring buffer bytes in, record bytes out.
//! decode -> process table -> record builder, with every event that does
//! not become a record either applied to the table or counted as lost.
//! The async driver in `agent.rs` feeds it and ships its batches.

use std::{collections::HashMap, sync::Arc};

use agent_common::{AccessKind, AggKey};

use crate::{
    event::{self, AccessInfo, Event},
    host::Clock,
    metrics::{EventLabel, Metrics},
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
    pub access: u64,
    /// Accesses of a process to itself (e.g. perf on its own pid): not debugging.
    pub self_access: u64,
    pub records: u64,
    pub undecodable: u64,
    pub serialize_errors: u64,
}

/// Keeps the kernel's list of protected processes in step with the process
/// table (implemented by the enforcer; tests use a recorder).
pub trait Protector {
    /// Rule slot that protects this process, if any.
    fn slot_for(&self, e: &crate::process::ProcessEntry) -> Option<u32>;
    fn protect(&mut self, tgid: u32, slot: u32);
    fn unprotect(&mut self, tgid: u32);
    /// Installs a new kernel policy; `units` resolves a unit to cgroup ids.
    fn install(
        &mut self,
        policy: crate::enforce::KernelPolicy,
        units: &dyn Fn(&str) -> Vec<u64>,
    ) -> Result<(), crate::enforce::EnforceError>;
    /// Replaces the kernel's grants.
    fn set_grants(
        &mut self,
        grants: &[(agent_common::GrantKey, u64)],
    ) -> Result<(), crate::enforce::EnforceError>;
}

impl Protector for crate::enforce::Enforcer {
    fn slot_for(&self, e: &crate::process::ProcessEntry) -> Option<u32> {
        let exe = String::from_utf8_lossy(&e.exe);
        let comm = String::from_utf8_lossy(&e.comm);
        self.slot_for_process(&exe, &comm, e.creds.uid, e.cgroup_id)
    }
    fn install(
        &mut self,
        policy: crate::enforce::KernelPolicy,
        units: &dyn Fn(&str) -> Vec<u64>,
    ) -> Result<(), crate::enforce::EnforceError> {
        crate::enforce::Enforcer::install(self, policy, units)
    }
    fn set_grants(
        &mut self,
        grants: &[(agent_common::GrantKey, u64)],
    ) -> Result<(), crate::enforce::EnforceError> {
        crate::enforce::Enforcer::set_grants(self, grants)
    }
    fn protect(&mut self, tgid: u32, slot: u32) {
        if let Err(e) = crate::enforce::Enforcer::protect(self, tgid, slot) {
            tracing::error!(tgid, error = %e, "cannot protect a process in the kernel map");
        }
    }
    fn unprotect(&mut self, tgid: u32) {
        if let Err(e) = crate::enforce::Enforcer::unprotect(self, tgid) {
            tracing::error!(tgid, error = %e, "cannot update the kernel's protected processes");
        }
    }
}

pub struct Pipeline {
    table: ProcessTable,
    protector: Option<Box<dyn Protector + Send>>,
    /// Processes protected in the kernel map, by tgid.
    protected: HashMap<u32, u32>,
    /// Targets whose tracer the kill fallback removed: the agent checks they
    /// are not left stopped.
    resume: Vec<u32>,
    builder: RecordBuilder,
    batch: Vec<u8>,
    stats: PipelineStats,
    /// Kernel counters as last reported in a `lost` record.
    reported: LostCounts,
    /// Repeat counts of aggregated accesses as last reported.
    agg_reported: HashMap<AggKey, u64>,
    /// Events and records by kind, as they happen.
    metrics: Arc<Metrics>,
}

impl Pipeline {
    pub fn new(table: ProcessTable, builder: RecordBuilder) -> Self {
        Self {
            table,
            protector: None,
            protected: HashMap::new(),
            resume: Vec::new(),
            builder,
            batch: Vec::with_capacity(64 * 1024),
            stats: PipelineStats::default(),
            reported: LostCounts::default(),
            agg_reported: HashMap::new(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Installs the protector and protects every known process that a
    /// kernel rule covers (called again after each policy load).
    pub fn set_protector(&mut self, p: Box<dyn Protector + Send>, rule_names: Vec<String>) {
        self.builder.set_rule_names(rule_names);
        self.protector = Some(p);
        for tgid in std::mem::take(&mut self.protected).into_keys() {
            if let Some(p) = self.protector.as_mut() {
                p.unprotect(tgid);
            }
        }
        let pids: Vec<u32> = self.table.pids().collect();
        for pid in pids {
            self.sync_protection(pid);
        }
    }

    /// Installs a new kernel policy and re-protects every known process.
    pub fn install_kernel_policy(
        &mut self,
        policy: crate::enforce::KernelPolicy,
    ) -> Result<(), crate::enforce::EnforceError> {
        let names: Vec<String> = policy.rules.iter().map(|r| r.name.clone()).collect();
        let Some(mut p) = self.protector.take() else {
            return Ok(());
        };
        let enricher = self.builder.enricher_mut();
        let units: HashMap<String, Vec<u64>> = policy
            .rules
            .iter()
            .flat_map(|r| r.target_units.iter())
            .map(|u| (u.clone(), enricher.cgroup_ids_of_unit(u)))
            .collect();
        let r = p.install(policy, &|unit| units.get(unit).cloned().unwrap_or_default());
        self.protected.clear();
        self.set_protector(p, names);
        r
    }

    /// Replaces the kernel's grants (no-op without a protector).
    pub fn set_kernel_grants(
        &mut self,
        grants: &[(agent_common::GrantKey, u64)],
    ) -> Result<(), crate::enforce::EnforceError> {
        match self.protector.as_mut() {
            Some(p) => p.set_grants(grants),
            None => Ok(()),
        }
    }

    pub fn decider_mut(&mut self) -> &mut crate::decide::Decider {
        self.builder.decider_mut()
    }

    pub fn enricher_mut(&mut self) -> &mut crate::enrich::Enricher {
        self.builder.enricher_mut()
    }

    /// Targets to check for a stopped state (kill fallback).
    pub fn take_resume(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.resume)
    }

    fn sync_protection(&mut self, tgid: u32) {
        let Some(p) = self.protector.as_mut() else {
            return;
        };
        let slot = self
            .table
            .get(tgid)
            .filter(|e| e.exited_ns.is_none())
            .and_then(|e| p.slot_for(e));
        match (slot, self.protected.get(&tgid).copied()) {
            (Some(s), Some(old)) if s == old => {}
            (Some(s), _) => {
                p.protect(tgid, s);
                self.protected.insert(tgid, s);
            }
            (None, Some(_)) => {
                p.unprotect(tgid);
                self.protected.remove(&tgid);
            }
            (None, None) => {}
        }
    }

    /// Counts events and records into `metrics` from now on.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = metrics;
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
                self.metrics.event(&EventLabel::Exec);
                self.table.on_exec(&e);
                self.sync_protection(e.tgid);
                self.emit(|b, out, t| b.exec(out, &e, t));
            }
            Event::Fork(f) => {
                self.stats.fork += 1;
                self.metrics.event(&EventLabel::Fork);
                self.table.on_fork(&f);
                self.sync_protection(f.pid);
            }
            Event::Exit(x) => {
                self.stats.exit += 1;
                self.metrics.event(&EventLabel::Exit);
                self.table.on_exit(&x);
                self.sync_protection(x.pid);
            }
            Event::Access(a) => {
                self.stats.access += 1;
                if a.decision == agent_common::Decision::Killed
                    && a.access == AccessKind::Ptrace
                    && a.target_pid != 0
                {
                    self.resume.push(a.target_pid);
                }
                self.metrics.event(&EventLabel::Access(a.access));
                self.access(&a, None);
            }
        }
    }

    fn access(&mut self, a: &AccessInfo, window_s: Option<u64>) {
        if self.is_self_access(a) {
            self.stats.self_access += 1;
            return;
        }
        self.table.mark_notable(a.tgid);
        self.emit(|b, out, t| b.access(out, a, t, window_s));
    }

    /// A process naming itself (its own pid in its own namespace).
    fn is_self_access(&self, a: &AccessInfo) -> bool {
        a.target_pid != 0
            && (a.target_host_pid == Some(a.tgid)
                || a.target_pid == a.ns.ns_pid && a.ns.ns_pid != 0
                || a.target_pid == a.tgid && a.ns.ns_pid == 0)
    }

    /// Emits aggregate records for accesses repeated since the last report.
    /// `totals` are the kernel's cumulative repeat counts per key.
    pub fn report_aggregates(
        &mut self,
        now_ns: u64,
        window_s: u64,
        totals: impl IntoIterator<Item = (AggKey, u64)>,
    ) {
        let mut seen = HashMap::new();
        for (key, total) in totals {
            let last = self.agg_reported.get(&key).copied().unwrap_or(0);
            // A smaller total means the LRU map evicted and re-created the key.
            let delta = if total >= last { total - last } else { total };
            seen.insert(key, total);
            if delta == 0 {
                continue;
            }
            let Some(access) = AccessKind::from_u32(key.access) else {
                continue;
            };
            let Some(actor) = self.table.get(key.actor_tgid) else {
                continue;
            };
            let a = AccessInfo {
                ktime_ns: now_ns,
                flags: 0,
                pid: key.actor_tgid,
                tgid: key.actor_tgid,
                start_ns: actor.start_ns,
                access,
                target_pid: key.target_pid,
                request: key.request,
                arg: 0,
                ret: None,
                count: delta,
                aggregate: true,
                io_uring: false,
                target_host_pid: None,
                ppid: actor.ppid,
                creds: actor.creds,
                ns: actor.ns,
                cgroup_id: actor.cgroup_id,
                comm: actor.comm.to_vec(),
                name: Vec::new(),
                decision: agent_common::Decision::None,
                rule: None,
            };
            self.access(&a, Some(window_s));
        }
        self.agg_reported = seen;
    }

    fn emit(
        &mut self,
        f: impl FnOnce(&mut RecordBuilder, &mut Vec<u8>, &ProcessTable) -> serde_json::Result<()>,
    ) {
        let mark = self.batch.len();
        match f(&mut self.builder, &mut self.batch, &self.table) {
            Ok(()) => {
                self.stats.records += 1;
                self.metrics.record(self.builder.last_kind());
            }
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
        self.builder.enricher_mut().refresh();
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
            access: cumulative.access.saturating_sub(self.reported.access),
            undecodable: cumulative
                .undecodable
                .saturating_sub(self.reported.undecodable),
            spool_shed: cumulative
                .spool_shed
                .saturating_sub(self.reported.spool_shed),
        };
        if delta.total() == 0 {
            return;
        }
        tracing::warn!(
            exec = delta.exec,
            fork = delta.fork,
            exit = delta.exit,
            access = delta.access,
            undecodable = delta.undecodable,
            "events lost before they became records"
        );
        self.reported = cumulative;
        self.emit(|b, out, _| b.lost(out, now_ns, delta, cumulative));
    }

    /// Appends a `policy` record.
    pub fn policy_record<D: serde::Serialize>(&mut self, now_ns: u64, detail: D) {
        self.emit(|b, out, _| b.policy(out, now_ns, detail));
    }

    /// Appends a `grant` record.
    pub fn grant_record<D: serde::Serialize>(&mut self, now_ns: u64, detail: D) {
        self.emit(|b, out, _| b.grant(out, now_ns, detail));
    }

    /// Grant ids that decisions used since the last call.
    pub fn take_grant_uses(&mut self) -> Vec<String> {
        self.builder.take_grant_uses()
    }

    /// Live processes running `exe`.
    pub fn pids_with_exe(&self, exe: &[u8]) -> Vec<u32> {
        self.table
            .pids()
            .filter(|&pid| {
                self.table
                    .get(pid)
                    .is_some_and(|e| e.exited_ns.is_none() && *e.exe == *exe)
            })
            .collect()
    }

    /// Appends an `agent` record.
    pub fn agent_record<D: serde::Serialize>(&mut self, now_ns: u64, detail: D) {
        self.emit(|b, out, _| b.agent(out, now_ns, detail));
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{Creds, NsIds};
    use serde_json::Value;

    use super::*;
    use crate::{
        event::{ExecInfo, ExitInfo, ForkInfo, encode},
        host::Host,
        process::ProcessEntry,
    };

    fn pipeline() -> Pipeline {
        let mut table = ProcessTable::new(1000, 1_000, 1);
        let mut init = ProcessEntry::new(1, 0, 0);
        init.comm = b"init".as_slice().into();
        init.exe = b"/sbin/init".as_slice().into();
        table.insert(init);
        let host = Host {
            name: "h".into(),
            id: "i".into(),
            boot_id: "b".into(),
        };
        let enricher = crate::enrich::Enricher::new(
            std::path::Path::new("/nonexistent-debugmon/etc"),
            std::path::Path::new("/nonexistent-debugmon/cgroup"),
            std::path::Path::new("/nonexistent-debugmon/proc"),
            16,
        );
        Pipeline::new(table, RecordBuilder::new(host, Clock::sample(), enricher))
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
            ns: NsIds::default(),
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
            ns: NsIds::default(),
            comm: path.rsplit('/').next().unwrap().as_bytes().to_vec(),
            tty: Vec::new(),
            filename: path.as_bytes().to_vec(),
            argv: vec![path.as_bytes().to_vec()],
            argv_truncated: false,
            argv_total_len: 0,
            cwd: None,
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
    fn events_and_records_are_counted_by_kind() {
        let mut p = pipeline();
        let m = Arc::new(Metrics::new());
        p.set_metrics(Arc::clone(&m));
        p.handle(&fork(100, 1));
        p.handle(&exec(100, 1, "/bin/true"));
        p.handle(b"garbage");
        p.report_lost(1, LostCounts::default());
        let get = |v: Vec<(&str, u64)>, k: &str| v.into_iter().find(|(n, _)| *n == k).unwrap().1;
        assert_eq!(get(m.events_by_kind(), "exec"), 1);
        assert_eq!(get(m.events_by_kind(), "fork"), 1);
        assert_eq!(get(m.records_by_kind(), "exec"), 1);
        assert_eq!(get(m.records_by_kind(), "lost"), 1);
    }

    #[test]
    fn aggregates_report_deltas_per_key_and_survive_lru_resets() {
        let mut p = pipeline();
        p.handle(&fork(100, 1));
        p.handle(&exec(100, 1, "/usr/bin/strace"));
        p.take_batch();
        let key = AggKey {
            actor_tgid: 100,
            target_pid: 1,
            access: AccessKind::Ptrace as u32,
            _pad: 0,
            request: 2,
        };
        p.report_aggregates(1, 10, [(key, 0)]);
        assert!(p.take_batch().is_empty(), "no repeats, no record");
        p.report_aggregates(2, 10, [(key, 500)]);
        p.report_aggregates(3, 10, [(key, 500)]);
        p.report_aggregates(4, 10, [(key, 800)]);
        p.report_aggregates(5, 10, [(key, 40)]); // evicted and re-created
        let recs = lines(&p.take_batch());
        let counts: Vec<u64> = recs
            .iter()
            .map(|r| r["detail"]["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![500, 300, 40]);
        assert_eq!(recs[0]["detail"]["aggregate"], true);
        assert_eq!(recs[0]["detail"]["ptrace_request"], "PTRACE_PEEKDATA");
        assert_eq!(recs[0]["detail"]["window_s"], 10);
        assert_eq!(recs[0]["actor"]["exe"], "/usr/bin/strace");
    }

    #[test]
    fn access_to_oneself_is_not_a_record() {
        let mut p = pipeline();
        p.handle(&fork(100, 1));
        let a = AccessInfo {
            ktime_ns: 1,
            flags: 0,
            pid: 100,
            tgid: 100,
            start_ns: 100,
            access: AccessKind::PerfOpen,
            target_pid: 100,
            request: 1,
            arg: 0,
            ret: None,
            count: 1,
            aggregate: false,
            io_uring: false,
            target_host_pid: None,
            ppid: 1,
            creds: Creds::default(),
            ns: NsIds {
                pid_ns: 1,
                user_ns: 1,
                mnt_ns: 1,
                ns_pid: 100,
            },
            cgroup_id: 0,
            comm: b"perf".to_vec(),
            name: Vec::new(),
            decision: agent_common::Decision::None,
            rule: None,
        };
        p.handle(&encode(&Event::Access(a.clone())));
        assert!(p.take_batch().is_empty());
        assert_eq!(p.stats().self_access, 1);
        p.handle(&encode(&Event::Access(AccessInfo { target_pid: 1, ..a })));
        assert_eq!(lines(&p.take_batch()).len(), 1);
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
