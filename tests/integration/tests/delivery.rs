//! Delivery end to end with the real agent and a real nats-server
//! (JetStream, temp store, free loopback port): execs while NATS is up,
//! while it is down for ~10 s, then a SIGKILL of the agent and a restart
//! with the same state. At the end the stream holds exactly records 1..N
//! of the host, `debugmon verify` accepts the stream and each stdout
//! capture, and rejects a tampered copy naming the seq; `debugmon review`
//! shows the stream's records verified and the tampered one failing.

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use integration_test::{
    Agent, agent_bin, execs,
    nats::{Nats, free_port},
    nonce, require_root,
};
use serde_json::Value;

fn debugmon(args: &[&str]) -> Output {
    Command::new(agent_bin()).args(args).output().unwrap()
}

fn is_ours(r: &Value, tag: &str) -> bool {
    r["kind"] == "exec"
        && r["actor"]["argv"][1]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{tag}-")))
}

/// The stream's verify report (exit code, parsed JSON).
fn verify_stream(url: &str) -> (Option<i32>, Value) {
    let out = debugmon(&["verify", "--nats", url, "--json", "--trust-on-first-use"]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn only_host(report: &Value) -> &Value {
    let hosts = report["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 1, "one host in the stream: {report:#}");
    hosts.values().next().unwrap()
}

fn write_lines(path: &Path, records: &[Value]) {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_record_reaches_jetstream_once_across_an_outage_and_a_kill() {
    const PER_PHASE: u64 = 2_500;
    require_root();
    let t0 = Instant::now();
    let dir = std::env::temp_dir().join(nonce("delivery"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut nats = Nats::start(port, &dir.join("jetstream"));
    let state = dir.join("state");
    let (state_s, key_s, spool_s) = (
        state.display().to_string(),
        state.join("host.key").display().to_string(),
        state.join("spool").display().to_string(),
    );
    let env = [
        ("DEBUGMON_HOST_STATE_DIR", state_s.as_str()),
        ("DEBUGMON_HOST_KEY_PATH", key_s.as_str()),
        ("DEBUGMON_SPOOL_DIR", spool_s.as_str()),
        ("DEBUGMON_NATS_ENABLED", "true"),
        ("DEBUGMON_NATS_URLS", url.as_str()),
        // JetStream refuses a stream larger than the disk space it may use
        // (10 GiB by default): keep it within a test machine's disk.
        ("DEBUGMON_NATS_MAX_BYTES", "1GiB"),
    ];
    let tag = nonce("dlv");
    let (up, down, killed, after) = (
        format!("{tag}-up"),
        format!("{tag}-down"),
        format!("{tag}-killed"),
        format!("{tag}-after"),
    );

    let first = Agent::start_env(&[], &env);
    execs(&up, 0..PER_PHASE);
    nats.stop();
    let outage = Instant::now();
    execs(&down, 0..PER_PHASE);
    first.barrier();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed()));
    nats.restart();
    execs(&killed, 0..PER_PHASE);
    // Killed while the backlog of the outage is still going out.
    let first = first.stop_with(libc::SIGKILL);
    eprintln!("killed the first agent at {:?}", t0.elapsed());

    let second = Agent::start_env(&[], &env);
    execs(&after, 0..PER_PHASE);
    second.barrier();
    let barrier_seq = second
        .matching(|r| r["kind"] == "exec")
        .last()
        .and_then(|r| r["seq"].as_u64())
        .unwrap();
    let drained = Instant::now();
    let deadline = drained + Duration::from_secs(60);
    loop {
        let (_, report) = verify_stream(&url);
        let last = report["hosts"]
            .as_object()
            .and_then(|h| h.values().next())
            .and_then(|h| h["last_seq"].as_u64())
            .unwrap_or(0);
        if last >= barrier_seq {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not reach seq {barrier_seq} (at {last})"
        );
        // Each poll verifies the whole stream: not too often on 2 cores.
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "NATS caught up with seq {barrier_seq} {:?} after the last exec",
        drained.elapsed()
    );
    let second = second.stop();
    second.assert_clean();
    let n = second.records.last().unwrap()["seq"].as_u64().unwrap();

    // The stream: exactly 1..=N, one chain, nothing else.
    let (code, report) = verify_stream(&url);
    let host = only_host(&report);
    assert_eq!(code, Some(0), "verify over the stream: {report:#}");
    assert_eq!(host["first_seq"], 1, "{host:#}");
    assert_eq!(host["last_seq"], n, "{host:#}");
    assert_eq!(host["records"], n, "no gap, no duplicate: {host:#}");

    // Every exec of the phases an agent watched throughout is in the
    // stream or counted lost.
    let dump = debugmon(&[
        "tail",
        "--nats",
        &url,
        "--since",
        "1d",
        "--json",
        "--limit",
        &n.to_string(),
    ]);
    assert!(dump.status.success(), "tail: {dump:?}");
    let stream: Vec<Value> = dump
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(stream.len() as u64, n);
    let lost: u64 = stream
        .iter()
        .filter(|r| r["kind"] == "lost")
        .map(|r| r["detail"]["counts"]["exec"].as_u64().unwrap_or(0))
        .sum();
    for phase in [&up, &down, &after] {
        let seen = stream.iter().filter(|r| is_ours(r, phase)).count() as u64;
        eprintln!("{phase}: {seen} of {PER_PHASE} execs in the stream");
        assert!(
            seen + lost >= PER_PHASE,
            "{phase}: {seen} records + {lost} lost < {PER_PHASE}"
        );
    }

    // Each stdout capture verifies with the key of the start records.
    let key = second.records[0]["detail"]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // The killed agent's stdout may end on records signed by nothing yet:
    // they were released less than the signing interval after the last
    // signature, and the signature that covers them is the restarted
    // agent's first record, in the stream (verified above), not in this
    // file. Nothing else may be wrong with it.
    let path = dir.join("first.jsonl");
    write_lines(&path, &first.records);
    let out = debugmon(&[
        "verify",
        "--file",
        path.to_str().unwrap(),
        "--key",
        &key,
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let last = first.records.last().unwrap()["seq"].as_u64().unwrap();
    for p in only_host(&report)["problems"].as_array().unwrap() {
        assert!(
            p["problem"] == "unsigned" && p["to"].as_u64() == Some(last),
            "the killed agent's stdout: only its unsigned tail may be open: {report:#}"
        );
    }
    let path = dir.join("second.jsonl");
    write_lines(&path, &second.records);
    let out = debugmon(&["verify", "--file", path.to_str().unwrap(), "--key", &key]);
    assert!(
        out.status.success(),
        "verify over the second agent's stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An edited record is found and named.
    let mut tampered = second.records.clone();
    let victim = tampered
        .iter_mut()
        .find(|r| is_ours(r, &after))
        .expect("an exec of ours");
    let seq = victim["seq"].as_u64().unwrap();
    victim["actor"]["argv"][1] = Value::from("something-else");
    let path = dir.join("tampered.jsonl");
    write_lines(&path, &tampered);
    let out = debugmon(&["verify", "--file", path.to_str().unwrap(), "--key", &key]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("seq {seq} ")), "{text}");

    // `review` reads the same stream verified: every exec shown, each
    // `ok`; over the tampered copy it shows the edited record failing.
    let review = |args: &[&str]| -> (Option<i32>, Vec<Value>) {
        let out = debugmon(&[&["review", "--json"][..], args].concat());
        let rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out.status.code(), rows)
    };
    let (code, rows) = review(&["--nats", &url, "--trust-on-first-use", "--kind", "exec"]);
    assert_eq!(code, Some(0), "review over the stream");
    let execs = stream.iter().filter(|r| r["kind"] == "exec").count();
    assert_eq!(rows.len(), execs, "every exec of the stream");
    assert!(rows.iter().all(|r| r["verified"] == "ok"), "all verified");
    let path = path.to_str().unwrap();
    let (code, rows) = review(&["--file", path, "--key", &key, "--failed"]);
    assert_eq!(code, Some(1));
    assert_eq!(rows.len(), 1, "only the edited record fails: {rows:?}");
    assert_eq!(rows[0]["record"]["seq"], seq);
    let verdict = rows[0]["verified"].as_str().unwrap();
    assert!(verdict.starts_with("FAILED: edited"), "{verdict}");

    eprintln!("delivery test took {:?}", t0.elapsed());
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
