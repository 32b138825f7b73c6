//! The metrics registry: atomic counters and gauges shared as
//! `Arc<Metrics>` (no global state), rendered in the Prometheus text
//! exposition format (version 0.0.4) by [`Metrics::render`].
//!
//! Wired in this build (something increments or sets them):
//! `events_total`, `records_total`, `kernel_events_lost_total`,
//! `events_undecodable_total`, `programs_attached`,
//! `enforcement_mechanism`, `process_table_entries`, `build_info`,
//! `start_time_seconds`, `spool_records`, `spool_bytes`,
//! `spool_records_lost_total`.
//! Registered for the policy, grants and NATS stages, which own them and
//! call the `record_*`/`set_*` methods below: `decisions_total`,
//! `policy_reloads_total`, `grants_active`, `spool_records`, `spool_bytes`,
//! `nats_connected`, `nats_publish_errors_total`, `nats_msg_id_collisions_total`,
//! `nats_ack_latency_seconds`.
//!
//! - [`render`]: the text exposition
//! - [`status`]: the `debugmon status` report built from the registry, and
//!   the client that fetches it
//! - [`http`]: the endpoint serving `/metrics` and `/status`

pub mod http;
pub mod render;
pub mod status;

use std::{
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

use agent_common::AccessKind;

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

/// `reason` label values of `debugmon_spool_records_lost_total`: sealed
/// records that will not reach NATS (shed by the size bound, not
/// writable (disk full), torn by a kill during the write).
pub const SPOOL_LOST: [&str; 3] = ["shed", "unwritable", "torn"];

/// Upper bounds (seconds) of the ack latency histogram buckets.
const ACK_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

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
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; ACK_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
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
    programs_attached: AtomicU64,
    process_table: AtomicU64,
    spool_records: AtomicU64,
    spool_bytes: AtomicU64,
    spool_lost: [AtomicU64; SPOOL_LOST.len()],
    nats_connected: AtomicU64,
    publish_errors: AtomicU64,
    nats_collisions: AtomicU64,
    ack_latency: Histogram,
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
            programs_attached: AtomicU64::new(0),
            process_table: AtomicU64::new(0),
            spool_records: AtomicU64::new(0),
            spool_bytes: AtomicU64::new(0),
            spool_lost: Default::default(),
            nats_connected: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            nats_collisions: AtomicU64::new(0),
            ack_latency: Histogram::default(),
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

    pub fn set_undecodable(&self, total: u64) {
        self.undecodable.store(total, Relaxed);
    }

    pub fn set_process_table(&self, entries: u64) {
        self.process_table.store(entries, Relaxed);
    }

    pub fn set_spool(&self, records: u64, bytes: u64) {
        self.spool_records.store(records, Relaxed);
        self.spool_bytes.store(bytes, Relaxed);
    }

    /// Cumulative spool losses, in [`SPOOL_LOST`] order.
    pub fn set_spool_lost(&self, counts: [u64; SPOOL_LOST.len()]) {
        for (slot, v) in self.spool_lost.iter().zip(counts) {
            slot.store(v, Relaxed);
        }
    }

    pub fn set_nats_connected(&self, connected: bool) {
        self.nats_connected.store(u64::from(connected), Relaxed);
    }

    /// The NATS sink's own cumulative counters, copied once a second.
    pub fn set_nats(&self, connected: bool, errors: u64, collisions: u64) {
        self.set_nats_connected(connected);
        self.publish_errors.store(errors, Relaxed);
        self.nats_collisions.store(collisions, Relaxed);
    }

    pub fn record_publish_error(&self) {
        self.publish_errors.fetch_add(1, Relaxed);
    }

    /// Time from publish to JetStream ack.
    pub fn record_ack_latency(&self, d: Duration) {
        let h = &self.ack_latency;
        let secs = d.as_secs_f64();
        for (bucket, le) in h.buckets.iter().zip(ACK_BUCKETS) {
            if secs <= le {
                bucket.fetch_add(1, Relaxed);
            }
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
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
        self.nats_connected.load(Relaxed) != 0
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
