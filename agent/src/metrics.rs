//! The metrics registry: atomic counters and gauges shared as
//! `Arc<Metrics>` (no global state), rendered in the Prometheus text
//! exposition format (version 0.0.4) by [`Metrics::render`].
//!
//! Wired in this build (something increments or sets them):
//! `events_total`, `records_total`, `kernel_events_lost_total`,
//! `events_undecodable_total`, `programs_attached`,
//! `enforcement_mechanism`, `process_table_entries`, `build_info`,
//! `start_time_seconds`.
//! Registered for the policy, grants and NATS stages, which own them and
//! call the `record_*`/`set_*` methods below: `decisions_total`,
//! `policy_reloads_total`, `grants_active`, `spool_records`, `spool_bytes`,
//! `nats_connected`, `nats_publish_errors_total`, `nats_ack_latency_seconds`.

use std::{
    fmt::Write as _,
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

use agent_common::AccessKind;

/// `kind` label values of `debugmon_events_total`: the kernel event, and for
/// accesses the syscall family.
pub const EVENT_KINDS: [&str; 11] = [
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
];

/// `kind` label values of `debugmon_records_total`: the record kinds of DESIGN.md.
pub const RECORD_KINDS: [&str; 9] = [
    "exec",
    "ptrace",
    "mem_access",
    "perf_attach",
    "bpf",
    "grant",
    "policy",
    "agent",
    "lost",
];

/// `action` label values of `debugmon_decisions_total`.
pub const ACTIONS: [&str; 3] = ["allow", "alert", "deny"];

/// `kind` label values of `debugmon_kernel_events_lost_total`: the kernel's drop counters.
pub const LOST_KINDS: [&str; 4] = ["exec", "fork", "exit", "access"];

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
    nats_connected: AtomicU64,
    publish_errors: AtomicU64,
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
            nats_connected: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
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

    /// Counts one record of `kind` (one of [`RECORD_KINDS`]; others are ignored).
    pub fn record(&self, kind: &str) {
        if let Some(i) = RECORD_KINDS.iter().position(|k| *k == kind) {
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

    pub fn set_nats_connected(&self, connected: bool) {
        self.nats_connected.store(u64::from(connected), Relaxed);
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

    pub fn nats_connected(&self) -> bool {
        self.nats_connected.load(Relaxed) != 0
    }

    pub fn grants_active(&self) -> u64 {
        self.grants_active.load(Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let info = self.info();
        let mut o = Out(String::with_capacity(4096));
        o.head("debugmon_build_info", "gauge", "Agent build; always 1.");
        o.sample(
            "debugmon_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        o.head(
            "debugmon_start_time_seconds",
            "gauge",
            "Start time of the agent since the Unix epoch.",
        );
        o.line(format_args!(
            "debugmon_start_time_seconds {:.3}",
            self.started_unix
        ));
        o.head(
            "debugmon_programs_attached",
            "gauge",
            "eBPF programs attached to the kernel.",
        );
        o.sample(
            "debugmon_programs_attached",
            &[],
            self.programs_attached.load(Relaxed),
        );
        o.head(
            "debugmon_enforcement_mechanism",
            "gauge",
            "How denials are enforced (the mechanism label); always 1.",
        );
        o.sample(
            "debugmon_enforcement_mechanism",
            &[("mechanism", &info.enforcement)],
            1,
        );
        o.labelled(
            "debugmon_events_total",
            "counter",
            "Kernel events received, by kind.",
            "kind",
            &self.events_by_kind(),
        );
        o.labelled(
            "debugmon_records_total",
            "counter",
            "Records emitted, by kind.",
            "kind",
            &self.records_by_kind(),
        );
        o.labelled(
            "debugmon_decisions_total",
            "counter",
            "Policy decisions, by action.",
            "action",
            &self.decisions_by_action(),
        );
        o.labelled(
            "debugmon_kernel_events_lost_total",
            "counter",
            "Events the kernel dropped because the ring buffer was full, by kind.",
            "kind",
            &self.kernel_lost_by_kind(),
        );
        o.single(
            "debugmon_events_undecodable_total",
            "counter",
            "Events userspace could not decode (counted, then dropped).",
            self.undecodable(),
        );
        o.single(
            "debugmon_process_table_entries",
            "gauge",
            "Processes in the process table.",
            self.process_table.load(Relaxed),
        );
        let (spool_records, spool_bytes) = self.spool();
        o.single(
            "debugmon_spool_records",
            "gauge",
            "Records waiting in the on-disk spool.",
            spool_records,
        );
        o.single(
            "debugmon_spool_bytes",
            "gauge",
            "Bytes used by the on-disk spool.",
            spool_bytes,
        );
        o.single(
            "debugmon_nats_connected",
            "gauge",
            "1 while connected to NATS.",
            u64::from(self.nats_connected()),
        );
        o.single(
            "debugmon_nats_publish_errors_total",
            "counter",
            "NATS publishes that failed or were not acknowledged.",
            self.publish_errors.load(Relaxed),
        );
        self.render_ack_latency(&mut o);
        o.labelled(
            "debugmon_policy_reloads_total",
            "counter",
            "Policy loads, by result (on error the running policy is kept).",
            "result",
            &[
                ("ok", self.policy_reloads_ok.load(Relaxed)),
                ("error", self.policy_reloads_error.load(Relaxed)),
            ],
        );
        o.single(
            "debugmon_grants_active",
            "gauge",
            "Unexpired access grants.",
            self.grants_active(),
        );
        o.0
    }

    fn render_ack_latency(&self, o: &mut Out) {
        let name = "debugmon_nats_ack_latency_seconds";
        let h = &self.ack_latency;
        o.head(
            name,
            "histogram",
            "Time from NATS publish to JetStream ack.",
        );
        for (bucket, le) in h.buckets.iter().zip(ACK_BUCKETS) {
            o.line(format_args!(
                "{name}_bucket{{le=\"{le}\"}} {}",
                bucket.load(Relaxed)
            ));
        }
        let count = h.count.load(Relaxed);
        o.line(format_args!("{name}_bucket{{le=\"+Inf\"}} {count}"));
        #[expect(clippy::cast_precision_loss, reason = "a latency sum in seconds")]
        let sum = h.sum_ns.load(Relaxed) as f64 / 1e9;
        o.line(format_args!("{name}_sum {sum}"));
        o.line(format_args!("{name}_count {count}"));
    }
}

fn zip_load(names: &[&'static str], values: &[AtomicU64]) -> Vec<(&'static str, u64)> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, v.load(Relaxed)))
        .collect()
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = self.0.write_fmt(args);
        self.0.push('\n');
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        self.line(format_args!("# HELP {name} {help}"));
        self.line(format_args!("# TYPE {name} {kind}"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: u64) {
        if labels.is_empty() {
            self.line(format_args!("{name} {v}"));
            return;
        }
        let l: Vec<String> = labels
            .iter()
            .map(|(k, val)| format!("{k}=\"{}\"", escape(val)))
            .collect();
        self.line(format_args!("{name}{{{}}} {v}", l.join(",")));
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        self.sample(name, &[], v);
    }

    fn labelled(&mut self, name: &str, kind: &str, help: &str, label: &str, vals: &[(&str, u64)]) {
        self.head(name, kind, help);
        for (l, v) in vals {
            self.sample(name, &[(label, l)], *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn renders_counters_with_help_and_type() {
        let m = Metrics::new();
        m.event(&EventLabel::Exec);
        m.event(&EventLabel::Exec);
        m.event(&EventLabel::Access(AccessKind::Ptrace));
        m.record("exec");
        m.record("not-a-kind");
        m.set_kernel_lost([1, 0, 0, 7]);
        m.set_undecodable(3);
        m.update_info(|i| i.programs = vec!["a".into(), "b".into()]);
        let t = m.render();
        assert!(t.contains("# HELP debugmon_events_total Kernel events received, by kind.\n# TYPE debugmon_events_total counter\n"), "{t}");
        assert_eq!(
            value(&t, "debugmon_events_total{kind=\"exec\"}").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&t, "debugmon_events_total{kind=\"ptrace\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&t, "debugmon_events_total{kind=\"fork\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&t, "debugmon_records_total{kind=\"exec\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&t, "debugmon_kernel_events_lost_total{kind=\"access\"}").as_deref(),
            Some("7")
        );
        assert_eq!(
            value(&t, "debugmon_events_undecodable_total").as_deref(),
            Some("3")
        );
        assert_eq!(
            value(&t, "debugmon_programs_attached").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&t, "debugmon_enforcement_mechanism{mechanism=\"none\"}").as_deref(),
            Some("1")
        );
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn every_sample_has_a_type_line_before_it() {
        let t = Metrics::new().render();
        let mut typed = Vec::new();
        for l in t.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| typed.last().is_some_and(|t| t == b))
                    .unwrap_or(name);
                assert_eq!(typed.last().map(String::as_str), Some(base), "{l}");
            }
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.record_ack_latency(Duration::from_micros(1500));
        m.record_ack_latency(Duration::from_secs(10));
        let t = m.render();
        let b = |le: &str| {
            value(
                &t,
                &format!("debugmon_nats_ack_latency_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(b("0.001").as_deref(), Some("0"));
        assert_eq!(b("0.002").as_deref(), Some("1"));
        assert_eq!(b("5").as_deref(), Some("1"));
        assert_eq!(b("+Inf").as_deref(), Some("2"));
        assert_eq!(
            value(&t, "debugmon_nats_ack_latency_seconds_count").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.update_info(|i| i.enforcement = "a\"b\\c\nd".into());
        let t = m.render();
        assert!(
            t.contains(r#"debugmon_enforcement_mechanism{mechanism="a\"b\\c\nd"} 1"#),
            "{t}"
        );
    }

    #[test]
    fn decisions_and_reloads_count() {
        let m = Metrics::new();
        m.record_decision("deny");
        m.record_decision("bogus");
        m.record_policy_reload(false);
        let t = m.render();
        assert_eq!(
            value(&t, "debugmon_decisions_total{action=\"deny\"}").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&t, "debugmon_decisions_total{action=\"allow\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&t, "debugmon_policy_reloads_total{result=\"error\"}").as_deref(),
            Some("1")
        );
    }
}
