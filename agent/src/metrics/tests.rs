//! Tests of the text exposition: every sample parsed back, the names
//! checked against [`METRIC_NAMES`], the process and build metrics present
//! and plausible.

use std::collections::BTreeSet;

use agent_common::{AccessKind, fault};

use super::{EventLabel, METRIC_NAMES, Metrics, NatsTotals};

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
fn ring_reads_count_by_trigger() {
    let m = Metrics::new();
    m.ring_read(true);
    m.ring_read(false);
    m.ring_read(false);
    let t = m.render();
    assert!(
        t.contains("# TYPE debugmon_ring_reads_total counter\n"),
        "{t}"
    );
    assert_eq!(
        value(&t, "debugmon_ring_reads_total{trigger=\"wake\"}").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&t, "debugmon_ring_reads_total{trigger=\"timer\"}").as_deref(),
        Some("2")
    );
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
fn ack_latency_is_a_summary_of_the_delivery_totals() {
    let m = Metrics::new();
    m.set_nats(NatsTotals {
        connected: true,
        acked: 40,
        errors: 2,
        collisions: 3,
        batches: 4,
        ack_latency_total_us: 2_500_123,
    });
    let t = m.render();
    assert_eq!(
        value(&t, "debugmon_nats_msg_id_collisions_total").as_deref(),
        Some("3")
    );
    assert!(
        t.contains("# TYPE debugmon_nats_ack_latency_seconds summary\n"),
        "{t}"
    );
    assert_eq!(
        value(&t, "debugmon_nats_ack_latency_seconds_sum").as_deref(),
        Some("2.500123")
    );
    assert_eq!(
        value(&t, "debugmon_nats_ack_latency_seconds_count").as_deref(),
        Some("4")
    );
    assert_eq!(value(&t, "debugmon_nats_connected").as_deref(), Some("1"));
    assert_eq!(
        value(&t, "debugmon_nats_acked_total").as_deref(),
        Some("40")
    );
    assert_eq!(
        value(&t, "debugmon_nats_publish_errors_total").as_deref(),
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

/// One parsed sample: name, labels in order, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses the exposition strictly: a sample line is `name{labels} value` or
/// `name value`, labels are `key="value"` with escapes, the value a float.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect(line))),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        out.push((name.to_owned(), labels, value));
    }
    out
}

fn parse_labels(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect(s);
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().expect("dangling escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.push((key.to_owned(), value));
        s = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    out
}

fn find<'a>(samples: &'a [Sample], name: &str) -> Option<&'a Sample> {
    samples.iter().find(|s| s.0 == name)
}

/// A fully set registry, so that metrics rendered only once known
/// (heartbeat time, LSM state) are present.
fn full() -> Metrics {
    let m = Metrics::new();
    m.update_info(|i| {
        i.kernel = "6.18.0-test".into();
        i.enforcement = "lsm".into();
        i.bpf_lsm_active = Some(true);
    });
    m.set_heartbeat_interval(std::time::Duration::from_secs(60));
    m.heartbeat_written();
    m
}

#[test]
fn every_rendered_name_is_listed_and_every_listed_name_rendered() {
    let samples = parse(&full().render());
    let rendered: BTreeSet<&str> = samples
        .iter()
        .map(|s| {
            let n = s.0.as_str();
            ["_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix))
                .filter(|base| METRIC_NAMES.contains(base))
                .unwrap_or(n)
        })
        .collect();
    let listed: BTreeSet<&str> = METRIC_NAMES.iter().copied().collect();
    assert_eq!(rendered, listed);
}

#[test]
fn process_metrics_describe_this_process() {
    let samples = parse(&Metrics::new().render());
    let v = |n: &str| find(&samples, n).unwrap_or_else(|| panic!("{n} missing")).2;
    assert!(v("process_cpu_seconds_total") >= 0.0);
    assert!(v("process_resident_memory_bytes") > 0.0);
    assert!(v("process_virtual_memory_bytes") >= v("process_resident_memory_bytes"));
    assert!(v("process_open_fds") >= 3.0);
    assert!(v("process_max_fds") >= v("process_open_fds"));
    // This test process started before now and after 2020.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = v("process_start_time_seconds");
    assert!(start > 1_577_836_800.0 && start <= now + 1.0, "{start}");
}

#[test]
fn build_info_names_version_kernel_and_mechanism() {
    let samples = parse(&full().render());
    let (_, labels, value) = find(&samples, "debugmon_build_info").unwrap();
    assert_eq!(*value, 1.0);
    let get = |k: &str| labels.iter().find(|(l, _)| l == k).map(|(_, v)| v.as_str());
    assert_eq!(get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(get("kernel"), Some("6.18.0-test"));
    assert_eq!(get("mechanism"), Some("lsm"));
    assert_eq!(
        find(&samples, "debugmon_bpf_lsm_active").map(|s| s.2),
        Some(1.0)
    );
}

#[test]
fn kernel_faults_have_one_series_per_site() {
    let m = Metrics::new();
    let mut counts = [0; fault::COUNT];
    counts[fault::SYSCALL_ATTR_READ as usize] = 5;
    m.set_kernel_faults(counts);
    let samples = parse(&m.render());
    let faults: Vec<_> = samples
        .iter()
        .filter(|s| s.0 == "debugmon_kernel_faults_total")
        .collect();
    assert_eq!(faults.len(), fault::COUNT);
    for (name, (_, labels, v)) in fault::NAMES.iter().zip(&faults) {
        assert_eq!(labels, &vec![("site".to_owned(), (*name).to_owned())]);
        let want = if *name == "syscall_attr_read" {
            5.0
        } else {
            0.0
        };
        assert_eq!(*v, want, "{name}");
    }
}

#[test]
fn heartbeat_time_is_absent_until_the_first_heartbeat() {
    let m = Metrics::new();
    let before = parse(&m.render());
    assert!(find(&before, "debugmon_heartbeat_last_seconds").is_none());
    assert_eq!(
        find(&before, "debugmon_heartbeat_interval_seconds").map(|s| s.2),
        Some(0.0)
    );
    let after = parse(&full().render());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = find(&after, "debugmon_heartbeat_last_seconds").unwrap().2;
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    assert_eq!(
        find(&after, "debugmon_heartbeat_interval_seconds").map(|s| s.2),
        Some(60.0)
    );
}

#[test]
fn spool_gauges_and_shed_counter() {
    let m = Metrics::new();
    m.set_spool(12, 4096, 3);
    let t = m.render();
    assert_eq!(value(&t, "debugmon_spool_records").as_deref(), Some("12"));
    assert_eq!(value(&t, "debugmon_spool_bytes").as_deref(), Some("4096"));
    assert_eq!(value(&t, "debugmon_spool_shed_total").as_deref(), Some("3"));
}

#[test]
fn label_values_with_escapes_parse_back() {
    let m = Metrics::new();
    m.update_info(|i| i.kernel = "a\"b\\c\nd".into());
    let samples = parse(&m.render());
    let (_, labels, _) = find(&samples, "debugmon_build_info").unwrap();
    assert!(labels.contains(&("kernel".to_owned(), "a\"b\\c\nd".to_owned())));
}
