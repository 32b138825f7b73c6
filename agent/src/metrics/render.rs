//! The Prometheus text exposition format (version 0.0.4) of the registry:
//! a `# HELP` and a `# TYPE` line before each metric's samples, label
//! values escaped.

use std::{fmt::Write as _, sync::atomic::Ordering::Relaxed};

use super::{ACK_BUCKETS, Metrics};

impl Metrics {
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
        o.labelled(
            "debugmon_spool_records_lost_total",
            "counter",
            "Sealed records that will not reach NATS, by reason (shed: spool bound; unwritable: disk full or I/O error; torn: cut after a kill mid-write).",
            "reason",
            &self.spool_lost_by_reason(),
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
        o.single(
            "debugmon_nats_msg_id_collisions_total",
            "counter",
            "Records whose NATS message id another publisher had used first (each published again under a fresh id).",
            self.nats_collisions.load(Relaxed),
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
    use std::time::Duration;

    use agent_common::AccessKind;

    use super::*;
    use crate::metrics::EventLabel;

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
        m.record(crate::event::Kind::Exec);
        m.record(crate::event::Kind::Other);
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
