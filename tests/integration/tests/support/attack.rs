//! What the attack tests share: an agent with a deny policy on processes
//! named `dmprotect`, copies of programs under protected names, processes
//! started and killed by pid, and `dmtool` (the attacker's raw syscalls),
//! with the outcomes each mechanism gives.

use std::{
    os::unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use integration_test::{Agent, nonce};
use serde_json::Value;

pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const DMTOOL: &str = env!("CARGO_BIN_EXE_dmtool");

pub(crate) const POLICY: &str = r#"
rules:
  - name: test-protected
    title: Test process protected from debugging
    on: [ptrace_attach, ptrace_access, mem_read, mem_write, pidfd_getfd]
    target: { comm: [dmprotect] }
    unless: { grant: true }
    action: deny
    severity: critical
    tags: [attack.t1055.008]
"#;

pub(crate) struct Setup {
    pub(crate) agent: Agent,
    pub(crate) dir: PathBuf,
    pub(crate) mechanism: String,
}

pub(crate) fn setup_with(policy: &str) -> Setup {
    let dir = std::env::temp_dir().join(nonce("evasion"));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.yaml"), policy).unwrap();
    let policies = dir.join("policies").display().to_string();
    // A one-second window: repeats come out as aggregates quickly.
    let agent = Agent::start(&["--policies", &policies, "--aggregate-window-secs", "1"]);
    let start = agent.wait_for("start", WAIT, |r| r["detail"]["event"] == "started");
    let mechanism = start["detail"]["enforcement"]["mechanism"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(mechanism == "lsm" || mechanism == "kill", "{start}");
    Setup {
        agent,
        dir,
        mechanism,
    }
}

pub(crate) fn setup() -> Setup {
    setup_with(POLICY)
}

/// A copy of `src` named `name` in `dir`.
pub(crate) fn copy(dir: &Path, src: &str, name: &str) -> PathBuf {
    let exe = dir.join(name);
    if !exe.exists() {
        std::fs::copy(src, &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    exe
}

/// A process the test started, killed by pid on drop.
pub(crate) struct Proc(pub(crate) Child);

impl Proc {
    pub(crate) fn start(exe: &Path, args: &[&str]) -> Self {
        Self(
            Command::new(exe)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn dmtool(args: &[&str]) -> Output {
    Command::new(DMTOOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn show(out: &Output) -> String {
    format!(
        "{:?} out={} err={}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The access did not happen: the actor was killed (kill fallback) or the
/// kernel refused it (BPF-LSM: dmtool exits 2 with the errno).
pub(crate) fn assert_stopped(mechanism: &str, out: &Output, what: &str) {
    match mechanism {
        "kill" => assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{what}: {}",
            show(out)
        ),
        _ => assert_eq!(out.status.code(), Some(2), "{what}: {}", show(out)),
    }
}

pub(crate) fn denial(r: &Value, tgid: u32, rule: &str) -> bool {
    r["decision"]["action"] == "deny"
        && r["decision"]["enforced"].is_string()
        && r["decision"]["rule"] == rule
        && r["target"]["pid"] == tgid
}

/// Waits until `tgid` has exec'd `exe` (the kernel then protects it), in
/// a process other than `not` (a start time: an earlier holder of the pid).
pub(crate) fn settled_after(agent: &Agent, tgid: u32, exe: &Path, not: Option<&Value>) -> Value {
    let name = exe.file_name().unwrap().to_str().unwrap().to_owned();
    agent.wait_for("the target's exec", WAIT, |r| {
        r["kind"] == "exec"
            && r["actor"]["pid"] == tgid
            && r["actor"]["comm"].as_str() == Some(&name[..name.len().min(15)])
            && not.is_none_or(|n| r["actor"]["start_ns"] != *n)
    })
}

pub(crate) fn settled(agent: &Agent, tgid: u32, exe: &Path) -> Value {
    settled_after(agent, tgid, exe, None)
}
