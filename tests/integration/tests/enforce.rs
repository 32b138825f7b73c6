//! Enforcement driven by policy, on whichever mechanism the kernel allows:
//! BPF-LSM (in `cargo xtask vm-test`) refuses with EPERM; the host's
//! fallback kills the actor at the syscall's entry. Either way the target
//! keeps running, unprotected processes can still be traced, a grant lets
//! the actor through until its expiry (decided in the kernel, with no
//! userspace action at expiry), and a broken policy written during the run
//! leaves the old one in force.

use std::{
    os::unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use integration_test::{Agent, agent_bin, nonce, own_user, uring_open_in_child};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
rules:
  - name: test-protected
    title: Test process protected from debugging
    on: [ptrace_attach, ptrace_access, mem_read, mem_write, pidfd_getfd]
    target: { comm: [dmprotect] }
    unless: { grant: true }
    action: deny
    severity: high
    tags: [attack.t1055.008]
  - name: test-alert-strace
    title: strace attached to the alert target
    on: [ptrace_attach]
    actor: { comm: [strace] }
    target: { comm: [dmalert] }
    unless: { grant: true }
    action: alert
    severity: medium
    tags: [attack.t1055.008]
"#;

/// A copy of sleep under another name (its comm), killed by pid on drop.
struct Target(Child);

impl Target {
    fn start(dir: &Path, name: &str) -> Self {
        let exe = dir.join(name);
        if !exe.exists() {
            std::fs::copy("/bin/sleep", &exe).unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self(
            Command::new(&exe)
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
    fn pid(&self) -> u32 {
        self.0.id()
    }
    /// Running or sleeping: not stopped, not traced, not dead. Under the
    /// kill fallback an attach that got through before the tracer died
    /// leaves the target stopped until the agent resumes it (within its
    /// one-second tick), hence the short wait.
    fn assert_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            if state == "S" || state == "R" {
                return;
            }
            assert!(Instant::now() < deadline, "target left in state {state}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    agent: Agent,
    dir: PathBuf,
    mechanism: String,
}

fn setup() -> Setup {
    let dir = std::env::temp_dir().join(nonce("enforce"));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.yaml"), POLICY).unwrap();
    let policies = dir.join("policies").display().to_string();
    let agent = Agent::start(&["--policies", &policies]);
    let start = agent.wait_for("start", WAIT, |r| r["detail"]["event"] == "started");
    let mechanism = start["detail"]["enforcement"]["mechanism"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        mechanism == "lsm" || mechanism == "kill",
        "enforcing: {start}"
    );
    Setup {
        agent,
        dir,
        mechanism,
    }
}

/// Runs a tracer against `pid` for at most `secs`, then interrupts it.
fn trace(tool: &str, pid: u32, secs: u64) -> Output {
    let pid = pid.to_string();
    let args: Vec<&str> = match tool {
        "strace" => vec!["-o", "/dev/null", "-p", &pid],
        _ => vec!["-p", &pid, "-batch", "-ex", "info registers rip"],
    };
    let mut c = Command::new(format!("/usr/bin/{tool}"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: interrupting the tracer this test started.
    unsafe { libc::kill(i32::try_from(c.id()).unwrap(), libc::SIGINT) };
    // A debugger still starting up may not act on SIGINT: escalate.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    c.wait_with_output().unwrap()
}

/// The action did not happen: refused (lsm) or the actor killed (kill).
fn assert_denied(mechanism: &str, out: &Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    match mechanism {
        "lsm" => {
            assert!(!out.status.success(), "{what} succeeded: {err}");
            // ptrace says EPERM; opening /proc/PID/mem turns the same
            // refusal into EACCES.
            assert!(
                err.contains("Operation not permitted") || err.contains("Permission denied"),
                "{what}: {err}"
            );
        }
        _ => assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{what}: {:?} {err}",
            out.status
        ),
    }
}

fn denial<'a>(r: &'a Value, target: u32, rule: &str) -> Option<&'a Value> {
    (r["decision"]["action"] == "deny"
        && r["decision"]["enforced"].is_string()
        && r["decision"]["rule"] == rule
        && r["target"]["pid"] == target)
        .then_some(r)
}

fn grant(agent: &Agent, target: &str, secs: u64) -> String {
    let out = Command::new(agent_bin())
        .args(["grant", "--user", &own_user(), "--target", target])
        .args(["--for", &format!("{secs}s"), "--reason", "TEST-1"])
        .arg("--socket")
        .arg(agent.state.join("control.sock"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grant: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace().nth(1).expect("grant id").to_owned()
}

#[test]
fn deny_rule_stops_debuggers_on_a_protected_process_only() {
    let s = setup();
    let t = Target::start(&s.dir, "dmprotect");
    let free = Target::start(&s.dir, "dmfree");
    // The agent protects processes it has seen exec.
    s.agent.barrier();
    // The VM carries gdb without its Python runtime, which makes gdb's own
    // start-up fail there; strace and the raw attaches cover the VM.
    let tools: &[&str] = if integration_test::in_vm() {
        &["strace"]
    } else {
        &["strace", "gdb"]
    };
    for &tool in tools {
        eprintln!("deny test: {tool} -p {}", t.pid());
        // gdb starts slowly under emulation (the VM test): give it time.
        let out = trace(tool, t.pid(), 30);
        assert_denied(&s.mechanism, &out, tool);
        t.assert_running();
        let rec = s.agent.wait_for(&format!("{tool} denial"), WAIT, |r| {
            denial(r, t.pid(), "test-protected").is_some()
        });
        assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    }
    // An unprotected process can still be traced.
    eprintln!("deny test: strace on the unprotected {}", free.pid());
    let out = trace("strace", free.pid(), 2);
    assert_ne!(out.status.signal(), Some(libc::SIGKILL));
    s.agent.wait_for("attach to the free process", WAIT, |r| {
        r["kind"] == "ptrace" && r["target"]["pid"] == free.pid() && r["detail"]["result"] == "ok"
    });
    // Writing the protected process's memory is refused too.
    eprintln!("deny test: dd into /proc/{}/mem", t.pid());
    let mem = format!("of=/proc/{}/mem", t.pid());
    let out = Command::new("dd")
        .args([mem.as_str(), "bs=1", "count=0", "conv=notrunc"])
        .output()
        .unwrap();
    assert_denied(&s.mechanism, &out, "dd into /proc/PID/mem");
    // And it was this rule that refused it, not something else.
    let dd = s.agent.wait_for("the dd denial", WAIT, |r| {
        denial(r, t.pid(), "test-protected").is_some() && r["actor"]["comm"] == "dd"
    });
    // The same file by a relative path, which no path test matches: the
    // kernel knows it by what was opened (or, with BPF-LSM, refuses it).
    eprintln!("deny test: dd into mem, relative to /proc/{}", t.pid());
    let out = Command::new("dd")
        .current_dir(format!("/proc/{}", t.pid()))
        .args(["of=mem", "bs=1", "count=0", "conv=notrunc"])
        .output()
        .unwrap();
    assert_denied(&s.mechanism, &out, "dd into mem relative to /proc/PID");
    s.agent.wait_for("the relative dd denial", WAIT, |r| {
        denial(r, t.pid(), "test-protected").is_some()
            && r["actor"]["comm"] == "dd"
            && r["actor"]["pid"] != dd["actor"]["pid"]
    });
    // The same file through io_uring, which no syscall hook sees: judged
    // at the request's completion (or, with BPF-LSM, refused at the open).
    eprintln!("deny test: io_uring open of /proc/{}/mem", t.pid());
    let (child, status) = uring_open_in_child(&format!("/proc/{}/mem", t.pid()), libc::O_WRONLY);
    if s.mechanism == "kill" {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "io_uring open: {status:?}"
        );
    } else {
        assert_eq!(status.code(), Some(1), "io_uring open refused: {status:?}");
    }
    let rec = s.agent.wait_for("the io_uring denial", WAIT, |r| {
        denial(r, t.pid(), "test-protected").is_some() && r["actor"]["pid"] == child
    });
    if s.mechanism == "kill" {
        assert_eq!(rec["detail"]["io_uring"], true, "{rec}");
    }
    if Path::new("/usr/bin/python3").exists() {
        let ops = format!("{}/scripts/debug_ops.py", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("/usr/bin/python3")
            .args([&ops, "vm", &t.pid().to_string()])
            .output()
            .unwrap();
        if s.mechanism == "kill" {
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGKILL),
                "process_vm_readv/writev"
            );
        } else {
            assert!(
                !out.status.success(),
                "process_vm_readv on a protected process"
            );
        }
    }
    t.assert_running();
    s.agent.stop().assert_clean();
}

#[test]
fn grant_lets_the_actor_through_until_it_expires() {
    let s = setup();
    let t = Target::start(&s.dir, "dmprotect");
    let a = Target::start(&s.dir, "dmalert");
    s.agent.barrier();
    // Alert rule without a grant.
    trace("strace", a.pid(), 2);
    s.agent.wait_for("alert on strace attach", WAIT, |r| {
        r["decision"]["action"] == "alert"
            && r["decision"]["rule"] == "test-alert-strace"
            && r["target"]["pid"] == a.pid()
    });
    let secs = 6;
    let id = grant(&s.agent, "any", secs);
    let granted_at = Instant::now();
    s.agent.wait_for("grant created", WAIT, |r| {
        r["kind"] == "grant"
            && r["detail"]["event"] == "created"
            && r["detail"]["grant"]["id"] == id.as_str()
    });
    let out = trace("strace", t.pid(), 2);
    assert_ne!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "granted attach was killed"
    );
    let rec = s.agent.wait_for("granted attach", WAIT, |r| {
        r["kind"] == "ptrace" && r["target"]["pid"] == t.pid() && r["detail"]["result"] == "ok"
    });
    assert_eq!(rec["decision"]["grant_id"], id.as_str(), "{rec}");
    assert_eq!(rec["decision"]["action"], "allow", "{rec}");
    trace("strace", a.pid(), 2);
    s.agent
        .wait_for("granted strace on the alert target", WAIT, |r| {
            r["target"]["pid"] == a.pid() && r["decision"]["grant_id"] == id.as_str()
        });
    s.agent.wait_for("grant used", WAIT, |r| {
        r["kind"] == "grant" && r["detail"]["event"] == "used"
    });
    // One second after the end the kernel refuses again on its own.
    let left = Duration::from_secs(secs + 1).saturating_sub(granted_at.elapsed());
    std::thread::sleep(left);
    let out = trace("strace", t.pid(), 5);
    assert_denied(&s.mechanism, &out, "strace after the grant expired");
    t.assert_running();
    trace("strace", a.pid(), 2);
    s.agent.wait_for("alert again after expiry", WAIT, |r| {
        r["decision"]["action"] == "alert"
            && r["target"]["pid"] == a.pid()
            && r["decision"]["grant_id"].is_null()
    });
    s.agent.wait_for("grant expired", WAIT, |r| {
        r["kind"] == "grant" && r["detail"]["event"] == "expired"
    });
    s.agent.stop().assert_clean();
}

#[test]
fn broken_policy_during_the_run_keeps_the_old_one_in_force() {
    let s = setup();
    let t = Target::start(&s.dir, "dmprotect");
    s.agent.barrier();
    std::fs::write(
        s.dir.join("policies/zz-broken.yaml"),
        "rules:\n  - name: x\n    on: [ptrace_attach]\n    bogus: 1\n",
    )
    .unwrap();
    let rec = s.agent.wait_for("policy rejected", WAIT, |r| {
        r["kind"] == "policy" && r["detail"]["event"] == "rejected"
    });
    let errors = rec["detail"]["errors"].to_string();
    assert!(
        errors.contains("zz-broken.yaml:4:5"),
        "file:line:column in {errors}"
    );
    let out = trace("strace", t.pid(), 5);
    assert_denied(&s.mechanism, &out, "strace under the old policy");
    s.agent.stop().assert_clean();
}
