//! Grants approved across the fleet, end to end on one nats-server: two
//! agents, each in a UTS namespace of its own (two host names, two state
//! directories), take approver keys from their config. A request made on
//! host A and approved with `debugmon approve` becomes a grant on A only,
//! and the granted ptrace on A then goes through the deny rule; an
//! approval signed with a key the hosts do not list is refused, recorded
//! as an alert, and leaves the request open for a real approver.
//!
//! Agent B runs without enforcement and starts first: two enforcing
//! agents on one kernel kill each other, since each lists every BPF link
//! at start and the other's self-protection takes that for tampering.
//! B's approval path does not depend on enforcement.
//!
//! An approval made while the host's agent is down is applied when it is
//! back: the request survives the restart, and the approval waits in the
//! agent's durable consumer.

use std::{
    os::unix::{fs::PermissionsExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use integration_test::{
    Agent, agent_bin,
    nats::{Nats, free_port},
    nonce, own_user,
};
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
"#;

/// A copy of sleep named `dmprotect`, killed by pid on drop.
struct Target(Child);

impl Target {
    fn start(dir: &Path) -> Self {
        let exe = dir.join("dmprotect");
        std::fs::copy("/bin/sleep", &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
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
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// strace attached to `pid` for up to two seconds, then interrupted (and
/// killed if it does not stop), by the pid this test started.
fn strace(pid: u32) -> Output {
    let mut c = Command::new("/usr/bin/strace")
        .args(["-o", "/dev/null", "-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if c.try_wait().unwrap().is_some() {
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: interrupting the tracer this test started.
    unsafe { libc::kill(i32::try_from(c.id()).unwrap(), libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(500));
    let _ = c.kill();
    c.wait_with_output().unwrap()
}

fn debugmon(args: &[&str]) -> (bool, String) {
    let out = Command::new(agent_bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

struct Fleet {
    a: Agent,
    b: Agent,
    host_a: String,
    dir: PathBuf,
    nats: Nats,
    /// The approver key the hosts list, as `carol`.
    carol: PathBuf,
}

/// A new approver key, `carol`, in `dir`: its file and the line hosts
/// list in `grants.approvers`.
fn approver_key(dir: &Path) -> (PathBuf, String) {
    let carol = dir.join("carol.key");
    let carol_s = carol.display().to_string();
    let (ok, line) = debugmon(&[
        "approve",
        "--create-key",
        "--key",
        &carol_s,
        "--name",
        "carol",
    ]);
    assert!(ok && line.starts_with("carol:"), "{line}");
    (carol, line.trim().to_owned())
}

/// An agent's settings for NATS at `url` with `approvers`.
fn nats_env(url: &str, approvers: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DEBUGMON_NATS_ENABLED", "true".to_owned()),
        ("DEBUGMON_NATS_URLS", url.to_owned()),
        ("DEBUGMON_NATS_MAX_BYTES", "1GiB".to_owned()),
        ("DEBUGMON_NATS_BACKOFF_MAX_MS", "500".to_owned()),
        ("DEBUGMON_GRANTS_APPROVERS", approvers.to_owned()),
        ("DEBUGMON_INVENTORY_INTERVAL_SECS", "0".to_owned()),
    ]
}

fn fleet(tag: &str) -> Fleet {
    let dir = std::env::temp_dir().join(nonce(tag));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/test.yaml"), POLICY).unwrap();
    let nats = Nats::start(free_port(), &dir.join("js"));
    let (carol, line) = approver_key(&dir);
    let url = nats.url();
    let policies = dir.join("policies").display().to_string();
    let env = |enforce: &'static str| {
        let mut env = nats_env(&url, &line);
        env.push(("DEBUGMON_AGENT_ENFORCE", enforce.to_owned()));
        env
    };
    let start = |host: &str, enforce| {
        let env = env(enforce);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Agent::start_as(Some(host), &["--policies", &policies], &env)
    };
    let id = std::process::id();
    let host_a = format!("dm-a-{tag}-{id}");
    let b = start(&format!("dm-b-{tag}-{id}"), "false");
    let a = start(&host_a, "true");
    let started = a.wait_for("A started", WAIT, |r| r["detail"]["event"] == "started");
    assert_eq!(started["host"]["name"], host_a.as_str(), "{started}");
    assert!(
        ["lsm", "kill"].contains(
            &started["detail"]["enforcement"]["mechanism"]
                .as_str()
                .unwrap_or("")
        ),
        "A enforces: {started}"
    );
    Fleet {
        a,
        b,
        host_a,
        dir,
        nats,
        carol,
    }
}

/// `debugmon grant --request` on agent `a`; the request id.
fn request(a: &Agent, target: &str) -> String {
    let sock = a.state.join("control.sock").display().to_string();
    let user = own_user();
    let (ok, text) = debugmon(&[
        "grant",
        "--request",
        "--user",
        &user,
        "--target",
        target,
        "--for",
        "10m",
        "--reason",
        "INC-42",
        "--socket",
        &sock,
    ]);
    assert!(ok, "grant --request: {text}");
    let id = text
        .split_whitespace()
        .nth(1)
        .expect("request id")
        .to_owned();
    a.wait_for("requested record", WAIT, |r| {
        r["kind"] == "grant"
            && r["detail"]["event"] == "requested"
            && r["detail"]["request"]["id"] == id.as_str()
    });
    id
}

fn approve(f: &Fleet, id: &str, key: &Path) -> (bool, String) {
    let url = f.nats.url();
    let key = key.display().to_string();
    let none = f.dir.join("no-trusted-keys").display().to_string();
    debugmon(&[
        "approve",
        id,
        "--key",
        &key,
        "--name",
        "carol",
        "--nats",
        &url,
        "--trusted-keys",
        &none,
    ])
}

fn grants_of(a: &Agent) -> String {
    grants_of_socket(&a.state.join("control.sock").display().to_string())
}

fn created(r: &Value) -> bool {
    r["kind"] == "grant" && r["detail"]["event"] == "created"
}

#[test]
fn a_request_approved_centrally_becomes_a_grant_on_its_host_only() {
    let f = fleet("apr1");
    let t = Target::start(&f.dir);
    f.a.barrier();
    let before = strace(t.pid());
    assert_eq!(
        before.status.signal(),
        Some(libc::SIGKILL),
        "ungranted strace killed on A"
    );
    let id = request(&f.a, &format!("pid:{}", t.pid()));

    let url = f.nats.url();
    let none = f.dir.join("no-trusted-keys").display().to_string();
    let (ok, list) = debugmon(&["approve", "--list", "--nats", &url, "--trusted-keys", &none]);
    assert!(
        ok && list.contains(&id) && list.contains(&f.host_a),
        "{list}"
    );

    let (ok, text) = approve(&f, &id, &f.carol);
    assert!(ok, "approve: {text}");
    let rec = f.a.wait_for("approved grant", WAIT, |r| {
        created(r) && r["detail"]["grant"]["approved"]["request"] == id.as_str()
    });
    let g = &rec["detail"]["grant"];
    assert_eq!(g["approved"]["approver"], "carol", "{rec}");
    assert_eq!(g["reason"], "INC-42", "{rec}");
    assert_eq!(g["requested_by"]["uid"], 0, "{rec}");
    let grant_id = g["id"].as_str().unwrap().to_owned();
    let list = grants_of(&f.a);
    assert!(
        list.contains(&grant_id) && list.contains("approved by carol (key "),
        "{list}"
    );

    // The grant is in A's kernel: the same strace now goes through.
    let after = strace(t.pid());
    assert_ne!(
        after.status.signal(),
        Some(libc::SIGKILL),
        "granted strace was killed"
    );
    let granted_seq = rec["seq"].as_u64().unwrap();
    let allowed = f.a.wait_for("granted attach", WAIT, |r| {
        r["kind"] == "ptrace"
            && r["target"]["pid"] == t.pid()
            && r["seq"].as_u64() > Some(granted_seq)
    });
    assert_eq!(allowed["decision"]["action"], "allow", "{allowed}");
    assert_eq!(
        allowed["decision"]["grant_id"],
        grant_id.as_str(),
        "{allowed}"
    );

    // The same approval again (the list no longer offers the request).
    let (ok, text) = approve(&f, &id, &f.carol);
    assert!(!ok, "a second approval of {id}: {text}");

    // B saw none of it: no request, no grant.
    f.b.barrier();
    assert!(grants_of(&f.b).contains("no active grants"));
    assert!(f.b.matching(|r| r["kind"] == "grant").is_empty());
    let a = f.a.stop();
    assert_eq!(
        a.records.iter().filter(|r| created(r)).count(),
        1,
        "one approval, one grant"
    );
    f.b.stop();
}

#[test]
fn an_approval_signed_by_an_unknown_key_is_refused_and_recorded() {
    let f = fleet("apr2");
    let id = request(&f.a, "any");
    // Named carol, but a key no host lists.
    let mallory = f.dir.join("mallory.key");
    let m = mallory.display().to_string();
    let (ok, text) = debugmon(&["approve", "--create-key", "--key", &m, "--name", "carol"]);
    assert!(ok, "{text}");
    let (ok, text) = approve(&f, &id, &mallory);
    assert!(ok, "the forged approval is published: {text}");
    let refused = f.a.wait_for("refused approval", WAIT, |r| {
        r["kind"] == "grant" && r["detail"]["event"] == "approval_refused"
    });
    assert_eq!(refused["detail"]["code"], "unknown_key", "{refused}");
    assert_eq!(refused["decision"]["action"], "alert", "{refused}");
    assert_eq!(refused["decision"]["rule"], "grant-approval", "{refused}");
    assert!(grants_of(&f.a).contains("no active grants"));
    assert!(f.a.matching(created).is_empty());

    // The request is still open: the real approver's approval makes it.
    let (ok, text) = approve(&f, &id, &f.carol);
    assert!(ok, "approve: {text}");
    f.a.wait_for("approved grant", WAIT, |r| {
        created(r) && r["detail"]["grant"]["approved"]["approver"] == "carol"
    });
    f.a.stop();
    f.b.stop();
}

#[test]
fn an_approval_made_while_the_agent_was_down_is_applied_when_it_is_back() {
    let dir = std::env::temp_dir().join(nonce("apr3"));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let nats = Nats::start(free_port(), &dir.join("js"));
    let (carol, line) = approver_key(&dir);
    let state = dir.join("state");
    let path = |name: &str| state.join(name).display().to_string();
    let sock = path("control.sock");
    // The same state on both runs: host key, spool, grants, requests.
    let mut env = nats_env(&nats.url(), &line);
    env.extend([
        ("DEBUGMON_HOST_STATE_DIR", path("")),
        ("DEBUGMON_HOST_KEY_PATH", path("host.key")),
        ("DEBUGMON_SPOOL_DIR", path("spool")),
        ("DEBUGMON_GRANTS_PATH", path("grants.json")),
        ("DEBUGMON_GRANTS_REQUESTS_PATH", path("requests.json")),
        ("DEBUGMON_CONTROL_SOCKET", sock.clone()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let host = format!("dm-c-{}", std::process::id());
    let a = Agent::start_as(Some(&host), &[], &env);
    let user = own_user();
    let (ok, text) = debugmon(&[
        "grant",
        "--request",
        "--user",
        &user,
        "--target",
        "any",
        "--for",
        "10m",
        "--reason",
        "INC-43",
        "--socket",
        &sock,
    ]);
    assert!(ok, "grant --request: {text}");
    let id = text
        .split_whitespace()
        .nth(1)
        .expect("request id")
        .to_owned();
    a.wait_for("requested record", WAIT, |r| {
        r["detail"]["event"] == "requested" && r["detail"]["request"]["id"] == id.as_str()
    });
    // Published before the stop: the approver finds it with the host down.
    let url = nats.url();
    let none = dir.join("no-trusted-keys").display().to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let (ok, list) = debugmon(&["approve", "--list", "--nats", &url, "--trusted-keys", &none]);
        if ok && list.contains(&id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request {id} never listed: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    a.stop();
    let carol_s = carol.display().to_string();
    let (ok, text) = debugmon(&[
        "approve",
        &id,
        "--key",
        &carol_s,
        "--name",
        "carol",
        "--nats",
        &url,
        "--trusted-keys",
        &none,
    ]);
    assert!(ok, "approve: {text}");
    let a = Agent::start_as(Some(&host), &[], &env);
    let rec = a.wait_for("grant from the approval made while down", WAIT, |r| {
        created(r) && r["detail"]["grant"]["approved"]["request"] == id.as_str()
    });
    assert_eq!(rec["detail"]["grant"]["reason"], "INC-43", "{rec}");
    assert!(grants_of_socket(&sock).contains(rec["detail"]["grant"]["id"].as_str().unwrap()));
    a.stop();
}

fn grants_of_socket(sock: &str) -> String {
    let (ok, text) = debugmon(&["grant", "--socket", sock, "list"]);
    assert!(ok, "grant list: {text}");
    text
}
