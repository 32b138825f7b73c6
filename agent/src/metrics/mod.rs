//! The metrics registry: atomic counters and gauges shared as
//! `Arc<Metrics>` (no global state), rendered in the Prometheus text
//! exposition format (version 0.0.4) by [`Metrics::render`].
//!
//! Every name the endpoint serves is in [`METRIC_NAMES`] (the dashboard
//! and alert rules in `packaging/` are checked against it); docs/metrics.md
//! says what each one means.
//!
//! - [`render`]: the text exposition
//! - [`process`]: the standard `process_*` metrics from `/proc/self`
//! - [`status`]: the `debugmon status` report built from the registry, and
//!   the client that fetches it
//! - [`http`]: the endpoint serving `/metrics` and `/status`

pub mod http;
pub mod process;
pub mod render;
pub mod status;
#[cfg(test)]
mod tests;

use std::{
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

use agent_common::{AccessKind, fault};

use crate::event::Kind;

/// `kind` label values of `debugmon_events_total`: the kernel event, and for
/// accesses the syscall family.
pub const EVENT_KINDS: [&str; 25] = [
    "exec",
    "fork",
    "exit",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "proc_mem",
    "proc_environ",
    "perf_event_open",
    "bpf_prog_load",
    "pidfd_getfd",
    "lsm_ptrace_access_check",
    "lsm_ptrace_traceme",
    "lsm_bprm_check_security",
    "lsm_task_kill",
    "lsm_perf_event_open",
    "lsm_bpf",
    "exec_traced",
    "agent_object",
    "signal",
    "listen",
    "kernel_mem",
    "preload_write",
    "proc_map_files",
    "proc_fd_memfd",
];

/// `kind` label values of `debugmon_records_total`: the record kinds
/// (docs/records.md), in [`Kind::WRITTEN`] order.
pub const RECORD_KINDS: [&str; Kind::WRITTEN.len()] = {
    let mut names = [""; Kind::WRITTEN.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Kind::WRITTEN[i].as_str();
        i += 1;
    }
    names
};

/// `action` label values of `debugmon_decisions_total`.
pub const ACTIONS: [&str; 3] = ["allow", "alert", "deny"];

/// `kind` label values of `debugmon_kernel_events_lost_total`: the kernel's drop counters.
pub const LOST_KINDS: [&str; 4] = ["exec", "fork", "exit", "access"];

/// `trigger` label values of `debugmon_ring_reads_total`: the kernel woke
/// an idle agent, or the agent's own timer came round while events flow.
pub const READ_TRIGGERS: [&str; 2] = ["wake", "timer"];

/// `reason` label values of `debugmon_spool_records_lost_total`: sealed
/// records that will not reach NATS (shed by the size bound, not
/// writable (disk full), torn by a kill during the write).
pub const SPOOL_LOST: [&str; 3] = ["shed", "unwritable", "torn"];

/// Every metric name the endpoint serves (a summary's `_sum` and `_count`
/// series under its base name). A test renders the registry and checks
/// this list against it both ways.
pub const METRIC_NAMES: [&str; 32] = [
    "debugmon_build_info",
    "debugmon_start_time_seconds",
    "debugmon_programs_attached",
    "debugmon_enforcement_mechanism",
    "debugmon_bpf_lsm_active",
    "debugmon_events_total",
    "debugmon_records_total",
    "debugmon_decisions_total",
    "debugmon_kernel_events_lost_total",
    "debugmon_events_undecodable_total",
    "debugmon_ring_reads_total",
    "debugmon_kernel_faults_total",
    "debugmon_process_table_entries",
    "debugmon_spool_records",
    "debugmon_spool_bytes",
    "debugmon_spool_shed_total",
    "debugmon_spool_records_lost_total",
    "debugmon_nats_connected",
    "debugmon_nats_acked_total",
    "debugmon_nats_publish_errors_total",
    "debugmon_nats_msg_id_collisions_total",
    "debugmon_nats_ack_latency_seconds",
    "debugmon_policy_reloads_total",
    "debugmon_grants_active",
    "debugmon_heartbeat_last_seconds",
    "debugmon_heartbeat_interval_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

/// The delivery stage's cumulative NATS numbers, copied in once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsTotals {
    pub connected: bool,
    /// Records acked by JetStream.
    pub acked: u64,
    /// Connect, publish and ack failures.
    pub errors: u64,
    /// Records whose message id another publisher had used first.
    pub collisions: u64,
    /// Acked batches, and the summed time from each batch's first publish
    /// to its last ack.
    pub batches: u64,
    pub ack_latency_total_us: u64,
}

/// Event kinds and the index of their counter.
pub enum EventLabel {
    Exec,
    Fork,
    Exit,
    Access(AccessKind),
}

impl EventLabel {
    fn index(&self) -> usize {
        match self {
            Self::Exec => 0,
            Self::Fork => 1,
            Self::Exit => 2,
            Self::Access(a) => match a {
                AccessKind::Ptrace => 3,
                AccessKind::VmReadv => 4,
                AccessKind::VmWritev => 5,
                AccessKind::ProcMem => 6,
                AccessKind::ProcEnviron => 7,
                AccessKind::PerfOpen => 8,
                AccessKind::BpfProgLoad => 9,
                AccessKind::PidfdGetfd => 10,
                AccessKind::LsmAccess => 11,
                AccessKind::LsmTraceme => 12,
                AccessKind::LsmExec => 13,
                AccessKind::LsmKill => 14,
                AccessKind::LsmPerf => 15,
                AccessKind::LsmBpf => 16,
                AccessKind::ExecTraced => 17,
                AccessKind::AgentObject => 18,
                AccessKind::Signal => 19,
                AccessKind::Listen => 20,
                AccessKind::KernelMem => 21,
                AccessKind::PreloadWrite => 22,
                AccessKind::ProcMapFiles => 23,
                AccessKind::ProcFdMemfd => 24,
            },
        }
    }
}

/// Facts set once at start (or on a policy reload), not counted.
#[derive(Debug, Clone, Default)]
pub struct Info {
    pub kernel: String,
    pub programs: Vec<String>,
    /// `none`, `bpf-lsm`, ...: how denials are enforced.
    pub enforcement: String,
    pub policy_hash: Option<String>,
    pub sinks: Vec<String>,
    /// Whether `bpf` is in the kernel's active LSM list (BPF-LSM could
    /// enforce here); `None` when the list could not be read.
    pub bpf_lsm_active: Option<bool>,
}

/// The registry. All methods take `&self`: writers are the pipeline, the
/// driver's one-second tick and the other stages; the reader is the HTTP
/// endpoint. Relaxed ordering: each value is independent, and a scrape
/// that sees one counter a moment behind another is fine.
pub struct Metrics {
    started: Instant,
    started_unix: f64,
    info: RwLock<Info>,
    events: [AtomicU64; EVENT_KINDS.len()],
    records: [AtomicU64; RECORD_KINDS.len()],
    decisions: [AtomicU64; ACTIONS.len()],
    kernel_lost: [AtomicU64; LOST_KINDS.len()],
    undecodable: AtomicU64,
    ring_reads: [AtomicU64; READ_TRIGGERS.len()],
    programs_attached: AtomicU64,
    process_table: AtomicU64,
    spool_records: AtomicU64,
    spool_bytes: AtomicU64,
    spool_lost: [AtomicU64; SPOOL_LOST.len()],
    spool_shed: AtomicU64,
    nats: RwLock<NatsTotals>,
    /// Unix time (ms) of the last heartbeat record, 0 before the first.
    heartbeat_last_ms: AtomicU64,
    heartbeat_every_s: AtomicU64,
    kernel_faults: [AtomicU64; fault::COUNT],
    policy_reloads_ok: AtomicU64,
    policy_reloads_error: AtomicU64,
    grants_active: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            info: RwLock::new(Info {
                enforcement: "none".into(),
                ..Info::default()
            }),
            events: Default::default(),
            records: Default::default(),
            decisions: Default::default(),
            kernel_lost: Default::default(),
            undecodable: AtomicU64::new(0),
            ring_reads: Default::default(),
            programs_attached: AtomicU64::new(0),
            process_table: AtomicU64::new(0),
            spool_records: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_lost: Default::default(),
            spool_shed: AtomicU64::new(0),
            nats: RwLock::new(NatsTotals::default()),
            heartbeat_last_ms: AtomicU64::new(0),
            heartbeat_every_s: AtomicU64::new(0),
            kernel_faults: Default::default(),
            policy_reloads_ok: AtomicU64::new(0),
            policy_reloads_error: AtomicU64::new(0),
            grants_active: AtomicU64::new(0),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn info(&self) -> Info {
        self.info
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the start facts (programs, enforcement, policy hash, sinks).
    pub fn update_info(&self, f: impl FnOnce(&mut Info)) {
        let mut info = self.info.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut info);
        self.programs_attached
            .store(info.programs.len() as u64, Relaxed);
    }

    pub fn event(&self, kind: &EventLabel) {
        self.events[kind.index()].fetch_add(1, Relaxed);
    }

    /// Counts one record of `kind` (a kind the agent does not write is ignored).
    pub fn record(&self, kind: Kind) {
        if let Some(i) = Kind::WRITTEN.iter().position(|k| *k == kind) {
            self.records[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a policy decision; `action` is one of [`ACTIONS`].
    pub fn record_decision(&self, action: &str) {
        if let Some(i) = ACTIONS.iter().position(|a| *a == action) {
            self.decisions[i].fetch_add(1, Relaxed);
        }
    }

    /// The kernel's cumulative drop counters, in [`LOST_KINDS`] order.
    pub fn set_kernel_lost(&self, counts: [u64; LOST_KINDS.len()]) {
        for (slot, v) in self.kernel_lost.iter().zip(counts) {
            slot.store(v, Relaxed);
        }
    }

    /// One read of the ring buffer: `woken` by the kernel, or on the
    /// agent's timer while events flow.
    pub fn ring_read(&self, woken: bool) {
        self.ring_reads[usize::from(!woken)].fetch_add(1, Relaxed);
    }

    pub fn set_undecodable(&self, total: u64) {
        self.undecodable.store(total, Relaxed);
    }

    pub fn set_process_table(&self, entries: u64) {
        self.process_table.store(entries, Relaxed);
    }

    /// The spool's unacked records and bytes, and the records its size
    /// bound shed since start.
    pub fn set_spool(&self, records: u64, bytes: u64, shed: u64) {
        self.spool_records.store(records, Relaxed);
        self.spool_bytes.store(bytes, Relaxed);
        self.spool_shed.store(shed, Relaxed);
    }

    /// Cumulative spool losses, in [`SPOOL_LOST`] order.
    pub fn set_spool_lost(&self, counts: [u64; SPOOL_LOST.len()]) {
        for (slot, v) in self.spool_lost.iter().zip(counts) {
            slot.store(v, Relaxed);
        }
    }

    pub fn set_nats(&self, totals: NatsTotals) {
        *self.nats.write().unwrap_or_else(PoisonError::into_inner) = totals;
    }

    pub fn nats(&self) -> NatsTotals {
        *self.nats.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The heartbeat interval (0: heartbeats are off).
    pub fn set_heartbeat_interval(&self, every: Duration) {
        self.heartbeat_every_s.store(every.as_secs(), Relaxed);
    }

    /// A heartbeat record was written now.
    pub fn heartbeat_written(&self) {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.heartbeat_last_ms.store(ms, Relaxed);
    }

    /// The kernel's cumulative fault counters, in [`fault::NAMES`] order.
    pub fn set_kernel_faults(&self, counts: [u64; fault::COUNT]) {
        for (slot, v) in self.kernel_faults.iter().zip(counts) {
            slot.store(v, Relaxed);
        }
    }

    pub fn kernel_faults(&self) -> [u64; fault::COUNT] {
        let mut out = [0; fault::COUNT];
        for (o, v) in out.iter_mut().zip(&self.kernel_faults) {
            *o = v.load(Relaxed);
        }
        out
    }

    pub fn record_policy_reload(&self, ok: bool) {
        if ok {
            &self.policy_reloads_ok
        } else {
            &self.policy_reloads_error
        }
        .fetch_add(1, Relaxed);
    }

    pub fn set_grants_active(&self, n: u64) {
        self.grants_active.store(n, Relaxed);
    }

    /// Counter values by label, for the status report.
    pub fn events_by_kind(&self) -> Vec<(&'static str, u64)> {
        zip_load(&EVENT_KINDS, &self.events)
    }

    pub fn records_by_kind(&self) -> Vec<(&'static str, u64)> {
        zip_load(&RECORD_KINDS, &self.records)
    }

    pub fn decisions_by_action(&self) -> Vec<(&'static str, u64)> {
        zip_load(&ACTIONS, &self.decisions)
    }

    pub fn kernel_lost_by_kind(&self) -> Vec<(&'static str, u64)> {
        zip_load(&LOST_KINDS, &self.kernel_lost)
    }

    /// Ring reads so far, by [`READ_TRIGGERS`].
    pub fn ring_reads_by_trigger(&self) -> Vec<(&'static str, u64)> {
        zip_load(&READ_TRIGGERS, &self.ring_reads)
    }

    pub fn undecodable(&self) -> u64 {
        self.undecodable.load(Relaxed)
    }

    pub fn spool(&self) -> (u64, u64) {
        (
            self.spool_records.load(Relaxed),
            self.spool_bytes.load(Relaxed),
        )
    }

    pub fn spool_lost_by_reason(&self) -> Vec<(&'static str, u64)> {
        zip_load(&SPOOL_LOST, &self.spool_lost)
    }

    pub fn nats_connected(&self) -> bool {
        self.nats().connected
    }

    pub fn grants_active(&self) -> u64 {
        self.grants_active.load(Relaxed)
    }
}

fn zip_load(names: &[&'static str], values: &[AtomicU64]) -> Vec<(&'static str, u64)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, v.load(Relaxed)))
        .collect()
}
