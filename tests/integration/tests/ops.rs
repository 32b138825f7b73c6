//! Ops surface of the real agent: systemd notifications (READY only after
//! the start record is out, watchdog pings, STOPPING on SIGTERM), the
//! metrics endpoint moving with real execs, `debugmon status`,
//! configuration errors refusing the start with file:line:column, and
//! heartbeat records at the configured interval, and their absence named
//! by `verify` when the agent was stopped.

use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_test::{Agent, agent_bin, http_get, nonce, require_root, signal_agent};
use serde_json::Value;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(nonce(tag));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Next notification datagram, or `None` at the deadline.
fn recv(sock: &UnixDatagram, deadline: Instant) -> Option<String> {
    let left = deadline.checked_duration_since(Instant::now())?;
    sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

fn started_records(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "agent" && r["detail"]["event"] == "started")
        .count()
}

#[test]
fn systemd_hears_ready_after_the_start_record_then_watchdog_then_stopping() {
    require_root();
    let dir = Scratch::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let out_path = dir.0.join("stdout.jsonl");
    // stdout goes to a file, not a pipe: when READY=1 arrives the start
    // record must already be in the file, with no reader thread in between.
    let mut child = Command::new(agent_bin())
        .args(["run", "--metrics-listen", ""])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(dir.0.join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(dir.0.join("stderr.txt")).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(60);
    let first = recv(&sock, deadline)
        .unwrap_or_else(|| panic!("no notification within 60 s; stderr:\n{}", stderr()));
    assert!(
        first.lines().any(|l| l == "READY=1"),
        "first notification: {first:?}"
    );
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(
        started_records(&stdout),
        1,
        "READY=1 came before the start record was written; stdout:\n{stdout}"
    );

    let (mut pings, mut statuses) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(15);
    while pings < 2 || statuses.is_empty() {
        let Some(msg) = recv(&sock, deadline) else {
            panic!("within 15 s: {pings} WATCHDOG=1 pings, statuses {statuses:?}");
        };
        for l in msg.lines() {
            if l == "WATCHDOG=1" {
                pings += 1;
            } else if let Some(s) = l.strip_prefix("STATUS=") {
                statuses.push(s.to_owned());
            }
        }
    }
    assert!(
        statuses
            .iter()
            .any(|s| s.contains("programs attached") && s.contains("events/s")),
        "{statuses:?}"
    );

    // SAFETY: signalling the child we spawned and have not reaped.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stopping = false;
    while !stopping {
        let Some(msg) = recv(&sock, deadline) else {
            break;
        };
        stopping = msg.lines().any(|l| l == "STOPPING=1");
    }
    let status = child.wait().unwrap();
    assert!(
        stopping,
        "no STOPPING=1 after SIGTERM; stderr:\n{}",
        stderr()
    );
    assert!(status.success(), "exit {status:?}; stderr:\n{}", stderr());
}

fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{metrics}"))
}

#[test]
fn metrics_and_status_follow_real_execs() {
    // Port 0 through the environment: the override path of the config is
    // exercised too, and the start record names the port that was bound.
    let agent = Agent::start_env(&[], &[("DEBUGMON_METRICS_LISTEN", "127.0.0.1:0")]);
    let started = agent.wait_for("start record", Duration::from_secs(5), |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "started"
    });
    let addr = started["detail"]["metrics"]
        .as_str()
        .expect("metrics address")
        .to_owned();

    let (status, text) = http_get(&addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        text.contains("# TYPE debugmon_events_total counter"),
        "{text}"
    );
    assert!(sample(&text, "debugmon_programs_attached") > 0);
    // The mechanism the start record names (lsm in the VM, kill here).
    let mechanism = started["detail"]["enforcement"]["mechanism"]
        .as_str()
        .expect("mechanism in the start record");
    assert_eq!(
        sample(
            &text,
            &format!("debugmon_enforcement_mechanism{{mechanism=\"{mechanism}\"}}")
        ),
        1
    );
    let before = sample(&text, "debugmon_events_total{kind=\"exec\"}");
    let timer_reads = |text: &str| sample(text, "debugmon_ring_reads_total{trigger=\"timer\"}");
    let reads = |text: &str| {
        sample(text, "debugmon_ring_reads_total{trigger=\"wake\"}") + timer_reads(text)
    };
    let reads_before = reads(&text);
    let timer_before = timer_reads(&text);

    let n = nonce("metrics");
    for _ in 0..5 {
        assert!(
            Command::new("/bin/true")
                .arg(&n)
                .status()
                .unwrap()
                .success()
        );
    }
    agent.barrier();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let v = sample(
            &http_get(&addr, "/metrics").1,
            "debugmon_events_total{kind=\"exec\"}",
        );
        if v >= before + 5 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        after >= before + 5,
        "exec events went from {before} to {after}"
    );
    let text = http_get(&addr, "/metrics").1;
    assert!(sample(&text, "debugmon_records_total{kind=\"exec\"}") >= 5);
    // The execs were read from the ring: at least one read since.
    assert!(
        reads(&text) > reads_before,
        "ring reads went from {reads_before} to {}",
        reads(&text)
    );
    // A read that found events keeps reading on the agent's own timer
    // until one finds nothing: timed reads follow within milliseconds
    // (without the timer only the once-a-second housekeeping would read,
    // uncounted).
    let deadline = Instant::now() + Duration::from_secs(10);
    let timed = loop {
        let v = timer_reads(&http_get(&addr, "/metrics").1);
        if v > timer_before || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        timed > timer_before,
        "timed ring reads went from {timer_before} to {timed}"
    );
    assert_eq!(http_get(&addr, "/nope").0, "HTTP/1.1 404 Not Found");

    let url = format!("http://{addr}");
    let human = Command::new(agent_bin())
        .args(["status", "--url", &url])
        .output()
        .unwrap();
    let human_out = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{human:?}");
    assert!(
        human_out.contains(&format!("(pid {})", agent.pid())),
        "{human_out}"
    );
    assert!(
        human_out.contains("programs:")
            && human_out.contains(&format!("enforcement:  {mechanism}")),
        "{human_out}"
    );

    let json = Command::new(agent_bin())
        .args(["status", "--url", &url, "--json"])
        .output()
        .unwrap();
    assert!(json.status.success(), "{json:?}");
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["pid"], agent.pid());
    assert!(!report["programs_attached"].as_array().unwrap().is_empty());
    assert!(report["counters"]["events"]["exec"].as_u64().unwrap() >= before + 5);
    assert_eq!(report["sinks"], serde_json::json!(["stdout"]));

    agent.stop().assert_clean();
    let gone = Command::new(agent_bin())
        .args(["status", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
}

#[test]
fn bad_config_refuses_to_start_with_its_location() {
    require_root();
    let dir = Scratch::new("config");
    let path = dir.0.join("config.toml");
    std::fs::write(&path, "[agent]\nring_mib = 8\nring_mb = 16\n").unwrap();
    for args in [
        &["config", "check", "--config"][..],
        &["run", "--config"][..],
    ] {
        let out = Command::new(agent_bin())
            .args(args)
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "{}:3:1: agent.ring_mb: unknown field `ring_mb`",
                path.display()
            )),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "no records from a refused start");
    }
    std::fs::write(&path, "[agent]\nring_mib = 3\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(":2:12: agent.ring_mib: 3 is not a power of two"),
        "{err}"
    );

    std::fs::write(&path, "[nats]\nuser = \"u\"\npassword = \"hunter2-xyz\"\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        printed.contains("password = \"********\"") && !printed.contains("hunter2"),
        "{printed}"
    );
}

#[test]
fn a_taken_metrics_port_costs_the_endpoint_not_the_monitoring() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let agent = Agent::start_env(&["--metrics-listen", &addr], &[]);
    let started = agent.wait_for("start record", Duration::from_secs(5), |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "started"
    });
    assert!(started["detail"]["metrics"].is_null(), "{started}");
    agent.barrier();
    let stopped = agent.stop();
    stopped.assert_clean();
    assert!(
        stopped
            .stderr
            .contains(&format!("binding the metrics endpoint to {addr}"))
            && stopped
                .stderr
                .contains("running without /metrics and /status"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn heartbeats_arrive_at_the_interval_with_the_counters() {
    let agent = Agent::start_env(&[], &[("DEBUGMON_AGENT_HEARTBEAT_SECS", "1")]);
    let started = agent.wait_for("start record", Duration::from_secs(5), |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "started"
    });
    assert_eq!(started["detail"]["heartbeat_s"], 1, "{started}");
    let is_beat = |r: &Value| r["kind"] == "agent" && r["detail"]["event"] == "heartbeat";
    agent.wait_for("a first heartbeat", Duration::from_secs(10), is_beat);
    // Work between heartbeats, so the counters have something to show:
    // one heartbeat before the barrier's exec, two after it.
    agent.barrier();
    let after = agent.matching(is_beat).len() + 2;
    let deadline = Instant::now() + Duration::from_secs(15);
    while agent.matching(is_beat).len() < after && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = agent.stop();
    stopped.assert_clean();
    let beats: Vec<&Value> = stopped.records.iter().filter(|r| is_beat(r)).collect();
    assert!(beats.len() >= 3, "{} heartbeats: {beats:#?}", beats.len());
    for b in &beats {
        let d = &b["detail"];
        assert_eq!(d["interval_s"], 1, "{b}");
        for counter in ["uptime_s", "events", "records", "lost"] {
            assert!(d[counter].is_u64(), "{counter} in {b}");
        }
        assert!(
            b.get("decision").is_none(),
            "a heartbeat is not an alert: {b}"
        );
        assert!(b["sig"].is_string(), "signed: {b}");
    }
    // About a second apart on the boot-time clock: on average, and none
    // much later than its time (a busy tick can delay one a little).
    let mono = |b: &Value| b["monotonic_ns"].as_u64().unwrap();
    let (first, last) = (beats[0], beats[beats.len() - 1]);
    let mean = (mono(last) - mono(first)) / (beats.len() as u64 - 1);
    assert!(
        (800_000_000..=1_500_000_000).contains(&mean),
        "{mean} ns between heartbeats on average"
    );
    for w in beats.windows(2) {
        let gap = mono(w[1]) - mono(w[0]);
        assert!(
            gap <= 3_000_000_000,
            "{gap} ns between {} and {}",
            w[0],
            w[1]
        );
    }
    // The counters are running totals: they never go back, and the
    // barrier's exec shows between the first heartbeat and the last.
    let n = |b: &Value, k: &str| b["detail"][k].as_u64().unwrap();
    for w in beats.windows(2) {
        for k in ["uptime_s", "events", "records", "lost"] {
            assert!(n(w[1], k) >= n(w[0], k), "{k}: {} then {}", w[0], w[1]);
        }
    }
    assert!(n(last, "events") > n(first, "events"), "{first} .. {last}");
    assert!(
        n(last, "uptime_s") > n(first, "uptime_s"),
        "{first} .. {last}"
    );
    // `records` counts every record up to and including the heartbeat:
    // between two heartbeats it moves as the seq does.
    let seq = |b: &Value| b["seq"].as_u64().unwrap();
    assert_eq!(
        n(last, "records") - n(first, "records"),
        seq(last) - seq(first),
        "{first} .. {last}"
    );
}

#[test]
fn a_stopped_agent_is_named_silent_by_verify() {
    let agent = Agent::start_env(&[], &[("DEBUGMON_AGENT_HEARTBEAT_SECS", "1")]);
    let is_beat = |r: &Value| r["kind"] == "agent" && r["detail"]["event"] == "heartbeat";
    agent.wait_for("a first heartbeat", Duration::from_secs(10), is_beat);
    // What root does to an agent it wants quiet (cgroup.freeze is the
    // same stop, seen from the stream).
    signal_agent(agent.pid(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(6));
    signal_agent(agent.pid(), libc::SIGCONT);
    let before = agent.matching(is_beat).len();
    let deadline = Instant::now() + Duration::from_secs(15);
    while agent.matching(is_beat).len() < before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = agent.stop();
    stopped.assert_clean();
    let dir = Scratch::new("silent");
    let file = dir.0.join("records.jsonl");
    let lines: Vec<String> = stopped.records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["verify", "--json", "--trust-on-first-use", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify passed a stopped agent: {text}"
    );
    // The silence is the one problem: the records themselves are intact.
    let report: Value = serde_json::from_str(&text).unwrap();
    let hosts = report["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 1, "{text}");
    let problems = hosts.values().next().unwrap()["problems"]
        .as_array()
        .unwrap();
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0]["problem"], "silent", "{text}");
}

/// Under load a group is signed only when 100 ms passed since the last
/// signature; a burst that ends on an unsigned group is signed by an
/// `agent` `checkpoint` record within about a second, with no heartbeat
/// and no stop to wait for. Every record is then provable from the
/// output as it stands.
#[test]
fn a_burst_ends_signed_without_waiting_for_the_stop() {
    require_root();
    let agent = Agent::start_env(&[], &[("DEBUGMON_AGENT_HEARTBEAT_SECS", "0")]);
    let tag = nonce("burst");
    for round in 0..3 {
        let last = format!("{tag}-{round}-299");
        integration_test::execs(&format!("{tag}-{round}"), 0..300);
        agent.wait_for("the burst's last exec", Duration::from_secs(30), |r| {
            r["kind"] == "exec" && r["actor"]["argv"][1] == last.as_str()
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tail = agent.matching(|_| true).pop().unwrap();
            if tail.get("sig").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the burst's last record stayed unsigned: {tail}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let stopped = agent.stop();
    stopped.assert_clean();
    let ours = |r: &&Value| {
        r["kind"] == "exec"
            && r["actor"]["argv"][1]
                .as_str()
                .is_some_and(|a| a.starts_with(&tag))
    };
    let execs: Vec<&Value> = stopped.records.iter().filter(ours).collect();
    let signed = execs.iter().filter(|r| r.get("sig").is_some()).count();
    let checkpoints = stopped
        .records
        .iter()
        .filter(|r| r["kind"] == "agent" && r["detail"]["event"] == "checkpoint")
        .count();
    eprintln!(
        "{} execs, {signed} of them signed, {checkpoints} checkpoints",
        execs.len()
    );
    assert_eq!(execs.len(), 900, "every exec of the bursts has its record");
    assert!(
        signed < execs.len() / 4,
        "under load one signature covers many records: {signed} of {} signed",
        execs.len()
    );
    let dir = Scratch::new("burst");
    let file = dir.0.join("records.jsonl");
    let lines: Vec<String> = stopped.records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["verify", "--trust-on-first-use", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
