//! Run inside `cargo xtask vm-test` (Debian's 6.1 kernel, `bpf` an active
//! LSM): the agent protects itself in the kernel. ptrace of the agent and
//! signals to it from anyone but pid 1 are refused with EPERM and recorded;
//! the agent keeps running. (SIGTERM from pid 1 is tested by the VM's init.)

use std::{process::Command, time::Duration};

use integration_test::{Agent, in_vm};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn require_vm() {
    assert!(
        in_vm(),
        "these tests need BPF-LSM: run them with `cargo xtask vm-test`"
    );
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn mechanism_is_lsm_and_the_agent_refuses_ptrace() {
    require_vm();
    let agent = Agent::start(&[]);
    let start = agent.wait_for("start", WAIT, |r| r["detail"]["event"] == "started");
    assert_eq!(
        start["detail"]["enforcement"]["mechanism"], "lsm",
        "{start}"
    );
    // Where the kernel has BPF trampolines, the syscall hooks are fentry
    // programs, not the tracepoints that slow every syscall on the host.
    let programs = start["detail"]["programs"].as_array().unwrap();
    for p in [
        "fentry_ptrace",
        "fexit_ptrace",
        "fentry_openat",
        "fexit_openat",
        "fentry_bpf",
        // Not a syscall hook: a tracepoint everywhere, here verified by 6.1.
        "uring_io_uring_complete",
    ] {
        assert!(programs.iter().any(|v| v == p), "{p} attached: {start}");
    }
    assert!(
        !programs.iter().any(|v| v
            .as_str()
            .is_some_and(|s| s.contains("_sys_enter_") || s.contains("_sys_exit_"))),
        "no syscall tracepoint attached: {start}"
    );
    let pid = i32::try_from(agent.pid()).unwrap();
    // SAFETY: an attach attempt on the agent; refused by the LSM hook.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) };
    assert_eq!(
        (rc, errno()),
        (-1, libc::EPERM),
        "PTRACE_ATTACH on the agent"
    );
    let rec = agent.wait_for("the refused attach", WAIT, |r| {
        r["decision"]["enforced"] == "lsm" && r["target"]["pid"] == agent.pid()
    });
    assert_eq!(rec["decision"]["rule"], "self-protection", "{rec}");
    assert_eq!(rec["decision"]["action"], "deny");
    // A real debugger gets the same answer.
    let out = Command::new("/usr/bin/strace")
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation not permitted"),
        "strace said: {err}"
    );
    agent.stop().assert_clean();
}

#[test]
fn kill_9_of_the_agent_is_refused_and_alerted() {
    require_vm();
    let agent = Agent::start(&[]);
    let pid = i32::try_from(agent.pid()).unwrap();
    // SAFETY: signals to the agent this test started; refused by task_kill.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!((rc, errno()), (-1, libc::EPERM), "kill -9 of the agent");
    // SAFETY: as above.
    let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert_eq!((rc, errno()), (-1, libc::EPERM), "kill -STOP of the agent");
    let rec: Value = agent.wait_for("the tamper record", WAIT, |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "tamper" && r["detail"]["signal"] == 9
    });
    assert_eq!(rec["decision"]["enforced"], "lsm", "{rec}");
    assert_eq!(rec["actor"]["pid"], std::process::id(), "{rec}");
    // Still alive and working: a new exec is still recorded.
    agent.barrier();
    // Signal 0 (existence probe) is not a threat and passes.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, 0) }, 0);
    agent.stop().assert_clean();
}
