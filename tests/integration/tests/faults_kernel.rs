//! Kernel-side failure visibility on the real kernel: a failure inside the
//! eBPF programs is counted per site and served on `/metrics` as
//! `debugmon_kernel_faults_total{site=...}`. The test provokes one site for
//! real (a `bpf(BPF_PROG_LOAD)` whose attribute pointer does not point at
//! readable memory: the program cannot read the program type and name)
//! and fails unless that site's counter moves by at least as many calls.
//! It also checks the standard process metrics describe the agent's
//! process, not the test's, and that the kernel log of failures is off by
//! default and, with `--kernel-log`, names the site in the agent's log.

use std::time::{Duration, Instant};

use integration_test::{Agent, http_get};

/// `bpf(2)` command number of BPF_PROG_LOAD (uapi).
const BPF_PROG_LOAD: libc::c_long = 5;

/// The body of a successful `GET path` on the agent's endpoint.
fn get(addr: &str, path: &str) -> String {
    let (status, body) = http_get(addr, path);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    body
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A `bpf(BPF_PROG_LOAD)` with an attribute pointer into an unmapped page:
/// the kernel answers EFAULT, and the entry probe's read of the attribute
/// fails first.
fn bad_prog_load() {
    // The first page is never mapped for a normal process.
    let bad = 16usize as *const libc::c_void;
    // SAFETY: the kernel checks the pointer; nothing is read here.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, bad, 128u32) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((rc, errno), (-1, Some(libc::EFAULT)));
}

#[test]
fn an_unreadable_syscall_attribute_is_counted_at_its_site() {
    let agent = Agent::start_env(&[], &[("DEBUGMON_METRICS_LISTEN", "127.0.0.1:0")]);
    let started = agent.wait_for("start record", Duration::from_secs(5), |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "started"
    });
    let addr = started["detail"]["metrics"]
        .as_str()
        .expect("metrics address")
        .to_owned();
    let series = "debugmon_kernel_faults_total{site=\"syscall_attr_read\"}";
    let text = get(&addr, "/metrics");
    let before = sample(&text, series).unwrap_or_else(|| panic!("{series} not in:\n{text}"));

    // The agent's own process, by pid: the process metrics are its.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", agent.pid())).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let vsize: f64 = fields[20].parse().unwrap();
    let served = sample(&text, "process_virtual_memory_bytes").expect("process metrics");
    // Within 10%: the agent may map or unmap memory between the two reads.
    assert!(
        (served - vsize).abs() <= vsize / 10.0,
        "served {served}, /proc says {vsize}"
    );
    assert!(sample(&text, "process_open_fds").unwrap() > 3.0);

    const CALLS: u32 = 3;
    for _ in 0..CALLS {
        bad_prog_load();
    }
    // The agent copies the counters into the registry once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = before;
    while Instant::now() < deadline {
        after = sample(&get(&addr, "/metrics"), series).unwrap();
        if after >= before + f64::from(CALLS) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        after >= before + f64::from(CALLS),
        "{series} moved from {before} to {after} after {CALLS} unreadable bpf attributes"
    );

    // The calls still made records: a failed read empties a field, it does
    // not lose the event.
    agent.wait_for("bpf record", Duration::from_secs(10), |r| {
        r["kind"] == "bpf" && r["actor"]["pid"] == std::process::id()
    });
    let stopped = agent.stop();
    stopped.assert_clean();
    assert!(
        !stopped.stderr.contains("kernel fault at"),
        "kernel log lines without --kernel-log:\n{}",
        stopped.stderr
    );
}

#[test]
fn kernel_log_names_the_failure_site_and_thread() {
    let agent = Agent::start(&["--kernel-log"]);
    bad_prog_load();
    // The call's record is out: the log line, read from its own ring on
    // the same loop, had its chance too.
    agent.wait_for("bpf record", Duration::from_secs(10), |r| {
        r["kind"] == "bpf" && r["actor"]["pid"] == std::process::id()
    });
    let stopped = agent.stop();
    stopped.assert_clean();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let want = format!(
        "kernel fault at syscall_attr_read: pid {tid} tgid {}",
        std::process::id()
    );
    assert!(
        stopped.stderr.contains(&want),
        "no {want:?} in the agent's log:\n{}",
        stopped.stderr
    );
}
