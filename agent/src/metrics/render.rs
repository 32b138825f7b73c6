//! The Prometheus text exposition format (version 0.0.4) of the registry:
//! a `# HELP` and a `# TYPE` line before each metric's samples, label
//! values escaped.

use std::{fmt::Write as _, sync::atomic::Ordering::Relaxed};

use agent_common::fault;

use super::{Metrics, process};

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let info = self.info();
        let mut o = Out(String::with_capacity(4096));
        o.head(
            "debugmon_build_info",
            "gauge",
            "Agent build, kernel and enforcement mechanism; always 1.",
        );
        let mut build = vec![("version", env!("CARGO_PKG_VERSION"))];
        // Set by whoever builds a package from a git checkout; a build
        // without it has no such label rather than an empty one.
        if let Some(commit) = option_env!("DEBUGMON_GIT_COMMIT").filter(|c| !c.is_empty()) {
            build.push(("git_commit", commit));
        }
        build.push(("kernel", &info.kernel));
        build.push(("mechanism", &info.enforcement));
        o.sample("debugmon_build_info", &build, 1);
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
        if let Some(active) = info.bpf_lsm_active {
            o.single(
                "debugmon_bpf_lsm_active",
                "gauge",
                "1 when bpf is in the kernel's active LSM list (BPF-LSM can enforce here).",
                u64::from(active),
            );
        }
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
        o.labelled(
            "debugmon_ring_reads_total",
            "counter",
            "Reads of the ring buffer, by what started them: the kernel waking an idle agent, or the agent's timer while events flow. Events per read: debugmon_events_total over this.",
            "trigger",
            &self.ring_reads_by_trigger(),
        );
        let faults = self.kernel_faults();
        let by_site: Vec<(&str, u64)> = fault::NAMES
            .iter()
            .zip(faults)
            .map(|(n, v)| (*n, v))
            .collect();
        o.labelled(
            "debugmon_kernel_faults_total",
            "counter",
            "Failures inside the eBPF programs (a read that faulted, a full map), by site.",
            "site",
            &by_site,
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
        o.labelled(
            "debugmon_spool_records_lost_total",
            "counter",
            "Sealed records that will not reach NATS, by reason (shed: spool bound; unwritable: disk full or I/O error; torn: cut after a kill mid-write).",
            "reason",
            &self.spool_lost_by_reason(),
        );
        o.single(
            "debugmon_spool_shed_total",
            "counter",
            "Unacked records the spool's size bound dropped (lost to NATS).",
            self.spool_shed.load(Relaxed),
        );
        let nats = self.nats();
        o.single(
            "debugmon_nats_connected",
            "gauge",
            "1 while connected to NATS.",
            u64::from(nats.connected),
        );
        o.single(
            "debugmon_nats_acked_total",
            "counter",
            "Records JetStream acknowledged (and the spool released).",
            nats.acked,
        );
        o.single(
            "debugmon_nats_publish_errors_total",
            "counter",
            "NATS connects, publishes and acks that failed.",
            nats.errors,
        );
        o.single(
            "debugmon_nats_msg_id_collisions_total",
            "counter",
            "Records whose NATS message id another publisher had used first (each published again under a fresh id).",
            nats.collisions,
        );
        render_ack_latency(&mut o, nats.batches, nats.ack_latency_total_us);
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
        self.render_heartbeat(&mut o);
        render_process(&mut o);
        o.0
    }

    fn render_heartbeat(&self, o: &mut Out) {
        o.single(
            "debugmon_heartbeat_interval_seconds",
            "gauge",
            "Configured time between heartbeat records; 0 when heartbeats are off.",
            self.heartbeat_every_s.load(Relaxed),
        );
        let ms = self.heartbeat_last_ms.load(Relaxed);
        // Before the first heartbeat there is no time to give: a 0 would
        // read as "last heartbeat in 1970" and fire every alert at once.
        if ms > 0 {
            o.head(
                "debugmon_heartbeat_last_seconds",
                "gauge",
                "Unix time the last heartbeat record was written.",
            );
            o.line(format_args!(
                "debugmon_heartbeat_last_seconds {}.{:03}",
                ms / 1000,
                ms % 1000
            ));
        }
    }
}

/// Time from a batch's first NATS publish to its last ack, as a summary
/// without quantiles: the delivery stage keeps sums, not samples.
fn render_ack_latency(o: &mut Out, batches: u64, total_us: u64) {
    let name = "debugmon_nats_ack_latency_seconds";
    o.head(
        name,
        "summary",
        "Time from a batch's first NATS publish to its last JetStream ack.",
    );
    o.line(format_args!(
        "{name}_sum {}.{:06}",
        total_us / 1_000_000,
        total_us % 1_000_000
    ));
    o.line(format_args!("{name}_count {batches}"));
}

/// The standard `process_*` metrics; left out (and logged) when
/// `/proc/self` cannot be read, rather than served as zeros.
fn render_process(o: &mut Out) {
    let p = match process::read_self() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "process metrics unavailable");
            return;
        }
    };
    o.head(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent by the agent, in seconds.",
    );
    o.line(format_args!("process_cpu_seconds_total {}", p.cpu_seconds));
    o.single(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes,
    );
    o.single(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes,
    );
    o.single(
        "process_open_fds",
        "gauge",
        "Open file descriptors.",
        p.open_fds,
    );
    if let Some(max) = p.max_fds {
        o.single(
            "process_max_fds",
            "gauge",
            "Limit on open file descriptors (RLIMIT_NOFILE, soft).",
            max,
        );
    }
    o.head(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    o.line(format_args!(
        "process_start_time_seconds {:.2}",
        p.start_time_seconds
    ));
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
