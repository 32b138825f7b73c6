//! Harness for the privileged end-to-end tests: starts the real `debugmon`
//! binary (path in `DEBUGMON_BIN`, set by `cargo xtask test`), collects its
//! stdout records, and stops it by the pid it started. Tests trigger real
//! syscalls and then wait, with a deadline, for the records they expect.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod nats;

/// Everything read from the agent's stdout so far.
#[derive(Default)]
struct Collected {
    records: Vec<Value>,
    /// Lines that were not valid JSON (must stay empty).
    invalid: Vec<String>,
    eof: bool,
}

type Shared = Arc<(Mutex<Collected>, Condvar)>;

/// A running agent.
pub struct Agent {
    /// Per-agent directory: grants file, control socket.
    pub state: PathBuf,
    child: Child,
    shared: Shared,
    reader: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
    /// The per-agent state directory the harness made (removed at stop);
    /// `None` when the test passed its own.
    own_state: Option<PathBuf>,
}

/// Result of stopping the agent.
pub struct Stopped {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub invalid: Vec<String>,
    pub stderr: String,
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "privileged tests need root (they load eBPF programs); run them via `cargo xtask test` as root"
    );
}

/// The `debugmon` binary under test.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DEBUGMON_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/debugmon");
    assert!(
        p.exists(),
        "DEBUGMON_BIN is not set and {} does not exist: build the agent first (`cargo xtask test` does)",
        p.display()
    );
    p
}

/// Where a test in the VM asks init to signal an agent.
pub const STOP_REQUEST: &str = "/tmp/debugmon-stop-request";

/// True inside `cargo xtask vm-test`'s VM.
pub fn in_vm() -> bool {
    std::env::var_os("DEBUGMON_VM").is_some()
}

/// Sends `signal` to an agent this test started. With BPF-LSM (the VM)
/// the agent refuses signals from anyone but pid 1: the VM's init is
/// asked to send it (its USR1 trap runs as pid 1), so there the signal
/// arrives a little later.
pub fn signal_agent(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).unwrap();
    if in_vm() {
        std::fs::write(STOP_REQUEST, format!("{signal} {pid}\n")).unwrap();
        // SAFETY: signalling init, whose USR1 trap reads the request.
        unsafe { libc::kill(1, libc::SIGUSR1) };
    } else {
        // SAFETY: signalling a child the test spawned and has not reaped.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "signal {signal} to {pid}"
        );
    }
}

/// Opens `path` through io_uring (IORING_OP_OPENAT), not the open
/// syscalls: the descriptor or the negative errno; `Err` when io_uring
/// itself failed. Does not panic (it also runs in a forked child).
fn try_uring_open(path: &std::ffi::CStr, flags: i32) -> std::io::Result<i32> {
    use io_uring::{IoUring, opcode, types};
    let mut ring = IoUring::new(4)?;
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr())
        .flags(flags | libc::O_CLOEXEC)
        .build()
        .user_data(7);
    // SAFETY: `path` outlives the request, which completes below.
    unsafe { ring.submission().push(&open) }.map_err(std::io::Error::other)?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| std::io::Error::other("no completion"))?;
    Ok(cqe.result())
}

/// [`try_uring_open`] for the test's own process.
pub fn uring_open(path: &str, flags: i32) -> i32 {
    let path = std::ffi::CString::new(path).unwrap();
    try_uring_open(&path, flags).expect("io_uring (kernel.io_uring_disabled?)")
}

/// Runs [`try_uring_open`] in a forked child, which exits 0 when it got a
/// descriptor, 1 when the open was refused and 2 when io_uring failed:
/// the child's pid and wait status (a kill fallback kills the child, not
/// the test). A child still running after 30 s is killed by its pid.
pub fn uring_open_in_child(path: &str, flags: i32) -> (u32, std::process::ExitStatus) {
    use std::os::unix::process::ExitStatusExt as _;
    let path = std::ffi::CString::new(path).unwrap();
    // SAFETY: the child runs only `try_uring_open` (no panics; glibc's
    // malloc is usable after fork) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match try_uring_open(&path, flags) {
            Ok(fd) if fd >= 0 => 0,
            Ok(_) => 1,
            Err(_) => 2,
        };
        // SAFETY: leaving the forked child without running test code.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    loop {
        // SAFETY: polling the child forked above, by its pid.
        let rc = unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
        assert!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if rc == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: the child forked above, by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            panic!("the io_uring child did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (pid as u32, std::process::ExitStatus::from_raw(status))
}

/// A value unique to this test run, to find our own records among the host's.
/// `GET path` on the agent's endpoint: (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Runs `/bin/true <tag>-<i>` for `i` in `range`: execs a test can find
/// again by their argv.
pub fn execs(tag: &str, range: std::ops::Range<u64>) {
    for i in range {
        let st = std::process::Command::new("/bin/true")
            .arg(format!("{tag}-{i}"))
            .status()
            .unwrap();
        assert!(st.success());
    }
}

pub fn nonce(tag: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("debugmon-{tag}-{}-{t:x}", std::process::id())
}

impl Agent {
    /// Starts `debugmon run` with `extra` arguments and waits for its start record.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_env(extra, &[])
    }

    /// Like [`Self::start`], with extra environment variables for the agent.
    ///
    /// Every agent gets its own host key, seal state and spool in a fresh
    /// directory (unless `env` names one): tests never touch the host's
    /// /var/lib/debugmon and never share a chain.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_as(None, extra, env)
    }

    /// Like [`Self::start_env`], in a UTS namespace of its own whose host
    /// name is `host` (when given): several agents on one kernel, each a
    /// different host to its records, its subjects and its grants. The
    /// shell sets the name and execs the agent, so the pid is the agent's.
    pub fn start_as(host: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Self {
        require_root();
        // Each agent gets its own grants file and control socket: tests must
        // not touch the host's /var/lib/debugmon or /run/debugmon.
        let state = std::env::temp_dir().join(nonce("agent-state"));
        std::fs::create_dir_all(&state).unwrap();
        let own_state = (!env.iter().any(|(k, _)| *k == "DEBUGMON_HOST_STATE_DIR")).then(|| {
            let dir = std::env::temp_dir().join(nonce("state"));
            std::fs::create_dir_all(&dir).unwrap();
            dir
        });
        let state_env: Vec<(&str, PathBuf)> = own_state
            .iter()
            .flat_map(|d| {
                [
                    ("DEBUGMON_HOST_STATE_DIR", d.clone()),
                    ("DEBUGMON_HOST_KEY_PATH", d.join("host.key")),
                    ("DEBUGMON_SPOOL_DIR", d.join("spool")),
                ]
            })
            .collect();
        let mut cmd = match host {
            None => Command::new(agent_bin()),
            Some(name) => {
                let mut c = Command::new("unshare");
                c.args([
                    "--uts",
                    "sh",
                    "-c",
                    "echo \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"",
                    name,
                ])
                .arg(agent_bin());
                c
            }
        };
        let mut child = cmd
            .arg("run")
            .args(extra)
            .env("RUST_LOG", "info")
            // Any free port: concurrent agents (another worktree, a dev's
            // `cargo xtask run`) must not collide on the default 7464.
            .env("DEBUGMON_METRICS_LISTEN", "127.0.0.1:0")
            .env("DEBUGMON_GRANTS_PATH", state.join("grants.json"))
            .env("DEBUGMON_CONTROL_SOCKET", state.join("control.sock"))
            .env("DEBUGMON_GRANTS_REQUESTS_PATH", state.join("requests.json"))
            .envs(state_env)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn debugmon");
        let shared: Shared = Arc::default();
        let out = child.stdout.take().unwrap();
        let s2 = Arc::clone(&shared);
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let parsed = serde_json::from_slice::<Value>(&line);
                        let (lock, cv) = &*s2;
                        let mut c = lock.lock().unwrap();
                        match parsed {
                            Ok(v) => c.records.push(v),
                            Err(_) => c.invalid.push(String::from_utf8_lossy(&line).into_owned()),
                        }
                        cv.notify_all();
                    }
                }
            }
            let (lock, cv) = &*s2;
            lock.lock().unwrap().eof = true;
            cv.notify_all();
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let agent = Self {
            state,
            child,
            shared,
            reader: Some(reader),
            stderr: Some(stderr),
            own_state,
        };
        let started = agent.try_wait_for(Duration::from_secs(60), |r| {
            r["kind"] == "agent" && r["detail"]["event"] == "started"
        });
        if started.is_none() {
            let st = agent.stop();
            panic!(
                "agent did not report started within 60 s (exit {:?}); stderr:\n{}",
                st.status, st.stderr
            );
        }
        agent
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a record satisfies `pred`; `None` on timeout or agent exit.
    pub fn try_wait_for(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut c = lock.lock().unwrap();
        let mut seen = 0;
        loop {
            if let Some(v) = c.records[seen..].iter().find(|r| pred(r)) {
                return Some(v.clone());
            }
            seen = c.records.len();
            if c.eof {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            c = cv.wait_timeout(c, deadline - now).unwrap().0;
        }
    }

    /// Like [`Self::try_wait_for`], panicking with `what` on timeout.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.try_wait_for(timeout, pred)
            .unwrap_or_else(|| panic!("no record for {what} within {timeout:?}"))
    }

    /// Records received so far matching `pred`.
    pub fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let (lock, _) = &*self.shared;
        lock.lock()
            .unwrap()
            .records
            .iter()
            .filter(|r| pred(r))
            .cloned()
            .collect()
    }

    /// Runs marker execs until one is reported: every exec that happened
    /// before it has then been reported or counted lost (the ring buffer
    /// keeps order). A marker can itself be dropped while the ring is still
    /// full, hence the retries.
    pub fn barrier(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            let n = nonce("barrier");
            let st = Command::new("/bin/true").arg(&n).status().unwrap();
            assert!(st.success());
            let seen = self.try_wait_for(Duration::from_secs(3), |r| {
                r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str()
            });
            if seen.is_some() {
                return;
            }
        }
        panic!("no barrier exec was reported within 90 s");
    }

    /// Sends `signal` to the agent (by the pid we started) and collects everything.
    pub fn stop_with(mut self, signal: i32) -> Stopped {
        signal_agent(self.child.id(), signal);
        // Generous: a stop drains the ring, seals and spools what is queued
        // and gives NATS a grace period; on a loaded machine that takes a while.
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                // Through pid 1 in the VM, where BPF-LSM refuses our own.
                signal_agent(self.child.id(), libc::SIGKILL);
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        if let Some(d) = self.own_state.take() {
            let _ = std::fs::remove_dir_all(d);
        }
        let (lock, _) = &*self.shared;
        let mut c = lock.lock().unwrap();
        Stopped {
            status,
            records: std::mem::take(&mut c.records),
            invalid: std::mem::take(&mut c.invalid),
            stderr,
        }
    }

    pub fn stop(self) -> Stopped {
        self.stop_with(libc::SIGTERM)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Only when a test panicked before stopping the agent.
        if self.reader.is_some() {
            // Through pid 1 in the VM, where BPF-LSM refuses our own kill
            // and a plain wait would never return.
            signal_agent(self.child.id(), libc::SIGKILL);
            let _ = self.child.wait();
        }
        if let Some(d) = self.own_state.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

impl Stopped {
    /// The agent stopped cleanly: exit 0, valid JSON only, a `stopped` record last.
    pub fn assert_clean(&self) {
        assert!(
            self.status.success(),
            "agent exited with {:?}; stderr:\n{}",
            self.status,
            self.stderr
        );
        assert!(
            self.invalid.is_empty(),
            "invalid JSON lines: {:?}",
            self.invalid
        );
        let last = self.records.last().expect("records");
        assert_eq!(last["kind"], "agent", "last record: {last}");
        assert_eq!(last["detail"]["event"], "stopped", "last record: {last}");
        assert!(
            !self.stderr.contains("panicked"),
            "stderr:\n{}",
            self.stderr
        );
    }

    /// Sum of `detail.counts.<kind>` over the `lost` records.
    pub fn lost(&self, kind: &str) -> u64 {
        self.records
            .iter()
            .filter(|r| r["kind"] == "lost")
            .map(|r| r["detail"]["counts"][kind].as_u64().unwrap_or(0))
            .sum()
    }
}

/// This process's audit login uid as the agent renders it (`null` when unset).
pub fn own_auid() -> Value {
    let s = std::fs::read_to_string("/proc/self/loginuid").unwrap();
    let v: u64 = s.trim().parse().unwrap();
    if v == u64::from(u32::MAX) {
        Value::Null
    } else {
        Value::from(v)
    }
}

/// Name of the person the kernel and policy see for this process: the
/// login user if set, else the user.
pub fn own_user() -> String {
    let auid: u64 = std::fs::read_to_string("/proc/self/loginuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: getuid has no preconditions.
    let uid = if auid == u64::from(u32::MAX) {
        u64::from(unsafe { libc::getuid() })
    } else {
        auid
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse::<u64>().ok() == Some(uid)).then(|| f[0].to_owned())
        })
        .expect("our uid is in /etc/passwd")
}
