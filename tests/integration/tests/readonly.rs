//! Read-only access (docs/threat-model.md "Read-only access"): under a
//! `--mode read` grant or a role with `access: read`, real debuggers look
//! at a protected process (gdb's backtrace, strace, process_vm_readv, a
//! read of /proc/PID/mem) and every way of changing it (gdb setting memory,
//! POKEDATA, process_vm_writev, a write through /proc/PID/mem, pidfd_getfd)
//! is refused, or its actor killed, before the target's memory changes.
//! The target is `dmtool sentinel` under a protected name: it exits 13 the
//! moment its word changes. Runs on the host (kill fallback) and in the
//! BPF-LSM VM.

mod support;

use std::{
    io::BufRead as _,
    os::unix::process::ExitStatusExt as _,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use integration_test::{Agent, agent_bin, own_user};
use serde_json::Value;
use support::attack::*;

/// The sentinel under the protected name, and the address of its word.
fn sentinel(dir: &Path, agent: &Agent) -> (Proc, String) {
    let exe = copy(dir, DMTOOL, "dmprotect");
    let mut t = Proc::start(&exe, &["sentinel"]);
    let mut line = String::new();
    std::io::BufReader::new(t.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    settled(agent, t.pid(), &exe);
    (t, line.trim().to_owned())
}

/// The sentinel's word never changed and it still runs.
fn assert_untouched(t: &mut Proc, what: &str) {
    // A write that landed is seen within the sentinel's 5 ms poll.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        t.0.try_wait().unwrap().is_none(),
        "{what}: the write landed in the target"
    );
}

fn grant(agent: &Agent, target: &str, mode: &str) -> String {
    let out = Command::new(agent_bin())
        .args(["grant", "--user", &own_user(), "--target", target])
        .args(["--for", "10m", "--reason", "TEST-24", "--mode", mode])
        .arg("--socket")
        .arg(agent.state.join("control.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "grant: {}", show(&out));
    let id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("grant id")
        .to_owned();
    let rec = agent.wait_for("grant created", WAIT, |r| {
        r["kind"] == "grant"
            && r["detail"]["event"] == "created"
            && r["detail"]["grant"]["id"] == id.as_str()
    });
    assert_eq!(rec["detail"]["grant"]["mode"], mode, "{rec}");
    id
}

/// Runs gdb against `pid` in batch mode with `commands`.
fn gdb(pid: u32, commands: &[&str]) -> Output {
    let mut c = Command::new("/usr/bin/gdb")
        .args(["-nx", "-p", &pid.to_string(), "-batch"])
        .args(commands.iter().flat_map(|c| ["-ex", c]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_with_output().unwrap()
}

/// strace on `pid` for two seconds, then interrupted as a user would.
fn strace(pid: u32) -> Output {
    let c = Command::new("/usr/bin/strace")
        .args(["-o", "/dev/null", "-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: interrupting the strace this test started, by its pid.
    unsafe { libc::kill(i32::try_from(c.id()).unwrap(), libc::SIGINT) };
    c.wait_with_output().unwrap()
}

/// The actor died for the change: a ptrace write and a write through
/// `/proc/PID/mem` are stopped at the syscall or the access on both
/// mechanisms (no LSM hook sees them; docs/threat-model.md).
fn assert_killed(out: &Output, what: &str) {
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "{what}: {}",
        show(out)
    );
}

/// The denial of a change under read-only access names the mode and what
/// would let it through.
fn write_denial(
    agent: &Agent,
    pid: u32,
    (what, via): (&str, &str),
    holder: &str,
    actor: &str,
) -> Value {
    let rec = agent
        .try_wait_for(WAIT, |r| {
            denial(r, pid, "test-protected")
                && r["detail"]["writes"] == true
                && r["detail"]["via"] == via
        })
        .unwrap_or_else(|| {
            let about: Vec<_> = agent
                .matching(|r| r["target"]["pid"] == pid)
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["kind"], r["actor"]["argv"], r["detail"], r["decision"]
                    )
                })
                .collect();
            let start = agent.matching(|r| r["detail"]["event"] == "started");
            panic!(
                "no record for {what} ({actor}); the target's records:\n{}\nprograms: {}",
                about.join("\n"),
                start[0]["detail"]["programs"]
            )
        });
    let reason = rec["decision"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(holder), "{what}: {rec}");
    rec
}

/// What read-only access must keep allowing, and every change it refuses,
/// against one sentinel; `holder` is how the denials name the access.
fn look_but_not_change(s: &Setup, t: &mut Proc, addr: &str, holder: &str) {
    let pid = t.pid().to_string();
    let out = gdb(t.pid(), &["bt"]);
    assert!(out.status.success(), "gdb bt: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("#0"),
        "gdb printed no frame: {}",
        show(&out)
    );
    let out = strace(t.pid());
    assert_ne!(out.status.signal(), Some(libc::SIGKILL), "{}", show(&out));
    for args in [["vm-read", &pid, addr], ["mem-read", &pid, addr]] {
        let out = dmtool(&args);
        assert!(out.status.success(), "{}: {}", args[0], show(&out));
    }
    assert_untouched(t, "reads");
    // Recorded and not denied: a grant's allow names the grant, a role's
    // exemption leaves the event undecided.
    let attach = s.agent.wait_for("gdb's attach recorded", WAIT, |r| {
        r["kind"] == "ptrace" && r["target"]["pid"] == t.pid() && r["actor"]["comm"] == "gdb"
    });
    assert_ne!(attach["decision"]["action"], "deny", "{attach}");

    // C's syntax whatever language gdb guesses for the frame (Rust's
    // parser has no `{type}address`).
    let set = format!("set {{char}}0x{addr} = 88");
    let out = gdb(t.pid(), &["set language c", &set]);
    assert!(!out.status.success(), "gdb set: {}", show(&out));
    assert_untouched(t, "gdb set");
    write_denial(
        &s.agent,
        t.pid(),
        ("gdb's write denied", "proc_mem"),
        holder,
        &show(&out),
    );

    for change in ["poke", "mem-write"] {
        let out = dmtool(&[change, &pid, addr]);
        assert_killed(&out, change);
        assert_untouched(t, change);
    }
    // Refused under BPF-LSM (ptrace_access_check sees the syscall), killed
    // by the fallback.
    let out = dmtool(&["vm-write", &pid, addr]);
    assert_stopped(&s.mechanism, &out, "vm-write");
    assert_untouched(t, "vm-write");
    let out = dmtool(&["pidfd", &pid]);
    assert_stopped(&s.mechanism, &out, "pidfd_getfd");
    let rec = write_denial(
        &s.agent,
        t.pid(),
        ("process_vm_writev denied", "process_vm_writev"),
        holder,
        "",
    );
    assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    s.agent.wait_for("POKEDATA denied", WAIT, |r| {
        denial(r, t.pid(), "test-protected")
            && r["detail"]["ptrace_request"]
                .as_str()
                .is_some_and(|q| q.contains("POKEDATA"))
    });
    s.agent.wait_for("pidfd_getfd denied", WAIT, |r| {
        denial(r, t.pid(), "test-protected") && r["detail"]["via"] == "pidfd_getfd"
    });
}

#[test]
fn a_read_grant_lets_debuggers_look_but_not_change() {
    let s = setup();
    let (mut t, addr) = sentinel(&s.dir, &s.agent);
    let id = grant(&s.agent, &format!("pid:{}", t.pid()), "read");
    look_but_not_change(&s, &mut t, &addr, &format!("read-only grant {id}"));
    // A full grant on top lets the write through: the refusals above were
    // the mode's doing.
    let full = grant(&s.agent, &format!("pid:{}", t.pid()), "full");
    let out = dmtool(&["vm-write", &t.pid().to_string(), &addr]);
    assert!(out.status.success(), "full grant: {}", show(&out));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = t.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the full grant's write never landed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(13), "the sentinel saw the write");
    s.agent
        .wait_for("the write under the full grant", WAIT, |r| {
            r["kind"] == "mem_access"
                && r["detail"]["via"] == "process_vm_writev"
                && r["decision"]["grant_id"] == full.as_str()
        });
    let stopped = s.agent.stop();
    stopped.assert_clean();
    // The engineer's line in the journal says what, why and how to get it.
    let line = stopped
        .stderr
        .lines()
        .find(|l| l.contains(&format!("read-only grant {id}")) && l.contains("refused"))
        .unwrap_or_else(|| panic!("no denial line naming the grant:\n{}", stopped.stderr));
    assert!(line.contains("ask for --mode full"), "{line}");
}

#[test]
fn a_read_only_role_lets_its_members_look_but_not_change() {
    let policy = format!(
        "roles:\n  readers: {{ users: [{}], access: read }}\n{}",
        own_user(),
        POLICY.replace("unless: { grant: true }", "unless: { role: [readers] }")
    );
    let s = setup_with(&policy);
    let start = s
        .agent
        .wait_for("start", WAIT, |r| r["detail"]["event"] == "started");
    let parts = start["detail"]["enforcement"]["parts"].as_array().unwrap();
    assert!(
        parts
            .iter()
            .any(|p| p["part"].as_str().unwrap().contains("read-only")),
        "{start}"
    );
    let (mut t, addr) = sentinel(&s.dir, &s.agent);
    look_but_not_change(&s, &mut t, &addr, "role readers is read-only");
    s.agent.stop().assert_clean();
}
