//! Run inside `cargo xtask vm-test`, whose clock is its own: the wall
//! clock jumps forward and back while the agent runs. A grant lasts its
//! time on the boot-time clock (a jump forward does not end it, a jump
//! back does not stretch it), `monotonic_ns` keeps increasing within the
//! boot, and `debugmon verify` over the records (heartbeats included)
//! reports no silence and no broken chain across the jumps.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use integration_test::{Agent, agent_bin, in_vm, nonce, own_user};
use serde_json::Value;

/// How far apart two records' boot-time stamps may be for one moment.
const SKEW_NS: u64 = 50_000_000;
const GRANT_S: u64 = 40;

fn require_vm() {
    assert!(
        in_vm(),
        "this test sets the wall clock: run it with `cargo xtask vm-test`"
    );
}

/// Moves CLOCK_REALTIME by `secs` (negative: back).
fn jump(secs: i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: plain syscalls on a local timespec.
    unsafe {
        assert_eq!(libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts), 0);
        ts.tv_sec += secs;
        assert_eq!(
            libc::clock_settime(libc::CLOCK_REALTIME, &ts),
            0,
            "clock_settime: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn grant_event<'a>(r: &'a Value, id: &str, event: &str) -> Option<&'a Value> {
    (r["kind"] == "grant" && r["detail"]["event"] == event && r["detail"]["grant"]["id"] == id)
        .then_some(r)
}

#[test]
fn wall_clock_jumps_neither_end_nor_stretch_a_grant() {
    require_vm();
    let agent = Agent::start_env(&[], &[("DEBUGMON_AGENT_HEARTBEAT_SECS", "5")]);
    let out = Command::new(agent_bin())
        .args(["grant", "--user", &own_user(), "--target", "any"])
        .args(["--for", &format!("{GRANT_S}s"), "--reason", "CLOCK-1"])
        .arg("--socket")
        .arg(agent.state.join("control.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "grant: {text}");
    let id = text.split_whitespace().nth(1).expect("grant id").to_owned();
    let created = agent.wait_for("grant created", Duration::from_secs(60), |r| {
        grant_event(r, &id, "created").is_some()
    });
    let t0 = created["monotonic_ns"].as_u64().unwrap();

    // Two hours forward: by the wall clock the grant is long over.
    jump(2 * 3600);
    let early = agent.try_wait_for(Duration::from_secs(8), |r| {
        grant_event(r, &id, "expired").is_some()
    });
    assert!(
        early.is_none(),
        "the grant ended on a wall-clock jump: {early:?}"
    );
    // Four hours back: by the wall clock it has hours left.
    jump(-4 * 3600);
    let started = Instant::now();
    let expired = agent.wait_for(
        "grant expired on the boot-time clock",
        Duration::from_secs(GRANT_S + 60),
        |r| grant_event(r, &id, "expired").is_some(),
    );
    jump(2 * 3600);
    let lasted = expired["monotonic_ns"].as_u64().unwrap() - t0;
    eprintln!(
        "grant lasted {:.1} s of boot time (waited {:?} after the jumps)",
        lasted as f64 / 1e9,
        started.elapsed()
    );
    // The two records take their times at different points of a tick
    // (the expiry at the tick's start, the creation when the request was
    // served): a few milliseconds either way are that, not an early end.
    // Ending on the wall clock would be seconds or hours early.
    assert!(
        lasted + SKEW_NS >= GRANT_S * 1_000_000_000,
        "the grant ended early: {lasted} ns"
    );

    // A marker, then a clean stop.
    let marker = nonce("clock");
    assert!(
        Command::new("/bin/true")
            .arg(&marker)
            .status()
            .unwrap()
            .success()
    );
    agent.wait_for("marker exec", Duration::from_secs(60), |r| {
        r["kind"] == "exec" && r["actor"]["argv"][1] == marker.as_str()
    });
    let stopped = agent.stop();
    stopped.assert_clean();
    let ours: Vec<&Value> = stopped
        .records
        .iter()
        .filter(|r| r["kind"] == "agent" || r["kind"] == "grant")
        .collect();
    for w in ours.windows(2) {
        let (a, b) = (w[0]["monotonic_ns"].as_u64(), w[1]["monotonic_ns"].as_u64());
        assert!(a <= b, "monotonic_ns went back: {} then {}", w[0], w[1]);
    }
    let path = std::env::temp_dir().join(format!("{marker}.jsonl"));
    let mut lines = String::new();
    for r in &stopped.records {
        lines.push_str(&serde_json::to_string(r).unwrap());
        lines.push('\n');
    }
    std::fs::write(&path, lines).unwrap();
    let out = Command::new(agent_bin())
        .args(["verify", "--json", "--trust-on-first-use", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify across wall-clock jumps: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
