//! The hot path, free of I/O: ring buffer bytes in, record bytes out. Each
//! event goes through the stages in order, each a module of its own:
//!
//! ```text
//! event::decode -> process table -> enrich (actor, target) -> decide (verdict) -> record
//! ```
//!
//! Every event that does not become a record is either applied to the
//! table or counted as lost. The kernel's decision maps are kept in step
//! with the table ([`protect`]). The runtime feeds it and ships its batches.

mod debug;
mod env;
mod fold;
mod inventory;
mod protect;

use std::{collections::HashMap, sync::Arc};

use agent_common::{AccessKind, AggKey, Enforcement};
use serde::Serialize;

pub use self::protect::Protector;
use self::{debug::DebugInterfaces, env::PendingEnv, fold::OpenFolder, protect::Protection};
use super::governance::Effect;
use crate::{
    decide::{Decider, PolicyDetail},
    ebpf::enforce::EnforceError,
    enrich::{
        ActorFacts, Enricher, Escapes,
        switches::{self, Switch},
    },
    error::error_chain,
    event::{self, AccessInfo, Event, ExecInfo, ExitInfo, Kind},
    metrics::{EventLabel, Metrics},
    policy::{PolicySet, grant::Grant, kernel::KernelPolicy},
    process::ProcessTable,
    record::{
        AccessDetail, Batch, ExecDetail, LostCounts, Parts, RecordBuilder,
        detail::{LostDetail, access_detail},
        redact::Redactor,
    },
    sys::host::{self, Clock},
};

/// The wait status's "core dumped" bit.
const CORE_DUMPED: u32 = 0x80;

/// Detail of a `core_dump` record.
#[derive(Serialize)]
struct CoreDumpDetail {
    /// `kernel.core_pattern` when the record was made: a file or the
    /// program the core went to.
    core_pattern: Option<String>,
    signal: i32,
}

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
    /// Signals to processes that are no runtime, and ports that serve no
    /// debug interface: seen, not records.
    pub not_debug: u64,
    pub records: u64,
    pub undecodable: u64,
    pub serialize_errors: u64,
}

pub struct Pipeline {
    table: ProcessTable,
    enricher: Enricher,
    decider: Decider,
    builder: RecordBuilder,
    protection: Protection,
    batch: Batch,
    /// The delivery thread's redactor, asked whether an actor's argv is
    /// clean (then that thread need not look into the record).
    redactor: Option<Arc<Redactor>>,
    stats: PipelineStats,
    /// Kernel counters as last reported in a `lost` record.
    reported: LostCounts,
    /// Repeat counts of aggregated accesses as last reported.
    agg_reported: HashMap<AggKey, u64>,
    /// Routine opens of `mem` and `environ`, folded per actor.
    folder: OpenFolder,
    /// Captured environment switches waiting for their exec event.
    env: PendingEnv,
    /// What each process was started with, for its signals and ports.
    debug: DebugInterfaces,
    /// Events and records by kind, as they happen.
    metrics: Arc<Metrics>,
}

impl Pipeline {
    pub fn new(table: ProcessTable, enricher: Enricher, builder: RecordBuilder) -> Self {
        Self {
            table,
            enricher,
            decider: Decider::empty(),
            builder,
            protection: Protection::default(),
            batch: Batch::with_capacity(64 * 1024),
            redactor: None,
            stats: PipelineStats::default(),
            reported: LostCounts::default(),
            agg_reported: HashMap::new(),
            folder: OpenFolder::default(),
            debug: DebugInterfaces::default(),
            env: PendingEnv::new(
                crate::enrich::switches::DEFAULT_ENV_NAMES
                    .iter()
                    .map(|n| (*n).to_owned())
                    .collect(),
            ),
            metrics: Arc::new(Metrics::new()),
        }
    }

    pub fn set_redactor(&mut self, r: Arc<Redactor>) {
        self.redactor = Some(r);
    }

    /// Installs the protector (the kernel's decision maps).
    pub fn set_protector(&mut self, p: Box<dyn Protector + Send>) {
        self.protection.set(p);
    }

    /// Installs a policy: the set into the decider, its kernel part into
    /// the kernel maps (which re-protect every running process).
    pub fn install_policy(
        &mut self,
        set: Arc<PolicySet>,
        kernel: KernelPolicy,
    ) -> Result<(), EnforceError> {
        let mechanism = self.protection.mechanism();
        self.decider.replace_set(set);
        let names = self.protection.install(&kernel)?;
        self.decider.set_kernel(names, mechanism);
        Ok(())
    }

    /// Gives the kernel the live grants.
    pub fn set_kernel_grants(&mut self, grants: &[Grant]) {
        self.protection
            .set_grants(grants, &self.table, &self.enricher);
    }

    pub fn decider_mut(&mut self) -> &mut Decider {
        &mut self.decider
    }

    /// Targets to check for a stopped state (kill fallback).
    pub fn take_resume(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.protection.resume)
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
        self.batch.bytes.len()
    }

    /// Hands over the records built so far.
    pub fn take_records(&mut self) -> Batch {
        std::mem::replace(&mut self.batch, Batch::with_capacity(64 * 1024))
    }

    /// The lines of the records built so far, handed over.
    pub fn take_batch(&mut self) -> Vec<u8> {
        self.take_records().bytes
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
                self.exec(&e);
            }
            Event::Fork(f) => {
                self.stats.fork += 1;
                self.metrics.event(&EventLabel::Fork);
                self.table.on_fork(&f);
            }
            Event::Exit(x) => {
                self.stats.exit += 1;
                self.metrics.event(&EventLabel::Exit);
                if x.exit_code & CORE_DUMPED != 0 {
                    self.core_dump(&x);
                }
                self.debug.on_exit(x.pid);
                self.table.on_exit(&x);
            }
            Event::Access(a) => {
                self.stats.access += 1;
                if a.enforcement == Enforcement::Killed
                    && a.access == AccessKind::Ptrace
                    && a.target_pid != 0
                {
                    self.protection.resume.push(a.target_pid);
                }
                self.metrics.event(&EventLabel::Access(a.access));
                self.access(&a, None, None);
            }
            Event::ExecEnv(e) => self.env.offer(e),
        }
    }

    /// The `exec` record of `e` (already applied to the table).
    fn exec(&mut self, e: &ExecInfo) {
        let mut esc = Escapes(Vec::new());
        let actor = self
            .enricher
            .actor(&ActorFacts::of_exec(e), &self.table, &mut esc);
        let debugger = self.decider.debugger_class(&actor.exe, &actor.comm);
        let (env, env_flags) = self.env.take(e.tgid, e.start_ns, &mut esc);
        let pairs: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let switches = switches::detect(&actor.exe, &actor.argv, &pairs);
        let verdict = self.decider.decide(
            Kind::Exec,
            &actor,
            None,
            PolicyDetail {
                debugger: debugger.clone(),
                debug_switches: switches.iter().flat_map(Switch::policy_names).collect(),
                ..PolicyDetail::default()
            },
        );
        self.debug.on_exec(e.tgid, e.start_ns, &switches);
        let mut detail = ExecDetail::new(e, esc, debugger);
        detail.env = env;
        detail.env_flags = env_flags;
        detail.debug_switches = switches;
        let parts = Parts {
            kind: Kind::Exec,
            actor: Some(&actor),
            target: None,
            detail,
            verdict: verdict.as_ref(),
        };
        self.emit(e.ktime_ns, parts);
    }

    /// The record of an access (ptrace, mem_access, perf_attach, bpf),
    /// unless the actor named itself.
    /// `targets`: the targets of a folded aggregate of routine opens.
    fn access(&mut self, a: &AccessInfo, window_s: Option<u64>, targets: Option<Vec<u32>>) {
        // The tracer of a traced exec is its actor; the event's task (the
        // tracee) is its target.
        let actor_pid = match a.access {
            AccessKind::ExecTraced => a.arg as u32,
            _ => a.tgid,
        };
        if a.access != AccessKind::ExecTraced && is_self_access(a) {
            self.stats.self_access += 1;
            return;
        }
        self.table.mark_notable(actor_pid);
        let mut esc = Escapes(Vec::new());
        let target = self.enricher.access_target(a, &self.table, &mut esc);
        let facts = match a.access {
            AccessKind::ExecTraced => ActorFacts::of_entry(actor_pid, self.table.get(actor_pid)),
            _ => ActorFacts::of_access(a, self.table.get(a.tgid)),
        };
        let actor = self.enricher.actor(&facts, &self.table, &mut esc);
        let (kind, mut detail): (Kind, AccessDetail) = access_detail(a);
        if a.access == AccessKind::BpfProgLoad {
            detail.prog_name = Some(esc.text("prog_name", &a.name));
        }
        detail.window_s = window_s;
        detail.targets = targets;
        detail.escaped = esc.0;
        // Signals and listens are records only when they touch a debug
        // interface.
        match a.access {
            AccessKind::Signal => {
                let runtime = target
                    .as_ref()
                    .and_then(|t| t.exe.as_deref())
                    .and_then(switches::runtime_of);
                detail.interface =
                    runtime.and_then(|r| switches::signal_interface(a.request as i32, r));
                if detail.interface.is_none() {
                    self.stats.not_debug += 1;
                    return;
                }
            }
            AccessKind::Listen => {
                // The event's start time is the listening thread's; the
                // switches were kept under the process's.
                let started = self.table.get(a.tgid).map_or(a.start_ns, |e| e.start_ns);
                detail.interface = self
                    .debug
                    .port(a.tgid, started, &actor.exe, a.request as u16);
                if detail.interface.is_none() {
                    self.stats.not_debug += 1;
                    return;
                }
            }
            _ => {}
        }
        let mut policy_detail = detail.policy_detail();
        // A signal's or a port's interface, as launch switches are named.
        if let Some(i) = detail.interface {
            policy_detail.debug_switches.push(i.to_owned());
            if let Some(r) = detail.risk {
                policy_detail.debug_switches.push(format!("{i}:{r}"));
            }
        }
        if self.decider.is_inventory(kind, &actor, &policy_detail) {
            detail.inventory = Some(true);
            policy_detail.inventory = true;
        }
        let verdict = self.decider.decide_access(
            a.enforcement,
            a.rule,
            kind,
            &actor,
            target.as_ref(),
            policy_detail,
        );
        if !self.folder.offer(
            a,
            detail.via,
            verdict.as_ref(),
            target.as_ref().map(|t| t.pid),
        ) {
            return;
        }
        let parts = Parts {
            kind,
            actor: Some(&actor),
            target: target.as_ref(),
            detail,
            verdict: verdict.as_ref(),
        };
        self.emit(a.ktime_ns, parts);
    }

    /// The `core_dump` record of a process that dumped core: the process
    /// is both actor and target (rules protecting it match), with the
    /// signal and where the kernel sent the core.
    fn core_dump(&mut self, x: &ExitInfo) {
        let mut esc = Escapes(Vec::new());
        let entry = self.table.get(x.pid);
        let facts = ActorFacts::of_entry(x.pid, entry);
        let actor = self.enricher.actor(&facts, &self.table, &mut esc);
        let target = self.enricher.target(x.pid, x.pid, &self.table, &mut esc);
        let detail = CoreDumpDetail {
            core_pattern: host::core_pattern(),
            signal: (x.exit_code & 0x7f) as i32,
        };
        let verdict = self.decider.decide(
            Kind::CoreDump,
            &actor,
            Some(&target),
            PolicyDetail::default(),
        );
        let parts = Parts {
            kind: Kind::CoreDump,
            actor: Some(&actor),
            target: Some(&target),
            detail,
            verdict: verdict.as_ref(),
        };
        self.emit(x.ktime_ns, parts);
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
                at_access: false,
                writes: false,
                refused: key.outcome == agent_common::agg_outcome::REFUSED,
                target_host_pid: None,
                ppid: actor.ppid,
                creds: actor.creds,
                ns: actor.ns,
                cgroup_id: actor.cgroup_id,
                comm: actor.comm.to_vec(),
                name: Vec::new(),
                enforcement: Enforcement::None,
                rule: None,
            };
            self.access(&a, Some(window_s), None);
        }
        self.agg_reported = seen;
        for f in self.folder.drain() {
            let mut a = f.access;
            a.ktime_ns = now_ns;
            self.access(&a, Some(window_s), Some(f.targets));
        }
    }

    fn emit<D: Serialize>(&mut self, ktime_ns: u64, parts: Parts<'_, D>) {
        let action = parts.verdict.map(|v| v.action);
        let argv_clean = self
            .redactor
            .as_ref()
            .is_some_and(|r| parts.actor.is_none_or(|a| r.argv_is_clean(&a.argv)));
        match self
            .builder
            .write_into(&mut self.batch, ktime_ns, parts, argv_clean)
        {
            Ok(()) => {
                self.stats.records += 1;
                if let Some(a) = action {
                    self.metrics.record_decision(a);
                }
                if let Some(k) = self.builder.last_kind() {
                    self.metrics.record(k);
                }
            }
            Err(e) => {
                // write_into leaves no half record in the batch.
                self.stats.serialize_errors += 1;
                tracing::error!(error = %e, "record serialization failed");
            }
        }
    }

    /// Forgets processes whose grace period ended.
    pub fn reap(&mut self, now_ns: u64) {
        self.table.reap(now_ns);
        self.enricher.refresh();
    }

    /// Emits a `lost` record if the kernel's drop counters (cumulative, as
    /// read from the map) or the undecodable count moved since the last one.
    pub fn report_lost(&mut self, now_ns: u64, kernel: LostCounts) {
        let cumulative = LostCounts {
            undecodable: self.stats.undecodable,
            ..kernel
        };
        let delta = cumulative.since(&self.reported);
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
        self.note(now_ns, Kind::Lost, LostDetail::new(delta, cumulative));
    }

    /// Appends a record without actor or target: `policy`, `grant`, `agent`.
    pub fn note<D: Serialize>(&mut self, now_ns: u64, kind: Kind, detail: D) {
        self.emit(now_ns, Parts::note(kind, detail));
    }

    /// Appends an alert without actor or target: something happened to
    /// the agent's own records (`agent` kind, rule `verdict.rule`).
    pub fn note_alert<D: Serialize>(
        &mut self,
        now_ns: u64,
        detail: D,
        verdict: &crate::decide::Verdict,
    ) {
        self.emit(
            now_ns,
            Parts {
                kind: Kind::Agent,
                actor: None,
                target: None,
                detail,
                verdict: Some(verdict),
            },
        );
    }

    /// Applies what governance asked for, in order.
    pub fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Install { set, kernel } => {
                    if let Err(e) = self.install_policy(set, kernel) {
                        tracing::error!(error = %error_chain(&e), "installing the kernel policy failed");
                    }
                }
                Effect::Grants(grants) => self.set_kernel_grants(&grants),
                Effect::Record { kind, detail } => self.note(host::boottime_ns(), kind, detail),
                Effect::Alert {
                    kind,
                    detail,
                    verdict,
                } => self.emit(
                    host::boottime_ns(),
                    Parts {
                        kind,
                        actor: None,
                        target: None,
                        detail,
                        verdict: Some(&verdict),
                    },
                ),
            }
        }
    }

    /// Grant ids that access decisions used since the last call.
    pub fn take_grant_uses(&mut self) -> Vec<String> {
        self.decider.take_grant_uses()
    }
}

/// A process naming itself (its own pid in its own namespace).
fn is_self_access(a: &AccessInfo) -> bool {
    a.target_pid != 0
        && (a.target_host_pid == Some(a.tgid)
            || a.target_pid == a.ns.ns_pid && a.ns.ns_pid != 0
            || a.target_pid == a.tgid && a.ns.ns_pid == 0)
}

#[cfg(test)]
mod fold_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod record_tests;
#[cfg(test)]
mod tests;
