//! Helpers for the fault tests (faults.rs): nats-server processes (one,
//! or a 3-node JetStream cluster) started and stopped by their pids, a
//! small tmpfs that is unmounted even when a test panics, and reading the
//! stream back with `debugmon verify` / `debugmon tail`.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub(crate) use integration_test::execs;
use integration_test::{
    agent_bin,
    nats::{free_port, nats_server_bin},
};
use serde_json::Value;

/// One JetStream nats-server on loopback, stopped by its pid.
pub(crate) struct Nats {
    child: Option<Child>,
    pub(crate) port: u16,
    /// HTTP monitoring port (`/jsz`).
    pub(crate) monitor: u16,
    pub(crate) store: PathBuf,
    /// Extra arguments (cluster settings).
    extra: Vec<String>,
}

impl Nats {
    /// A server that is not started yet (see [`Self::start`]).
    pub(crate) fn new(store: &Path, extra: Vec<String>) -> Self {
        Self {
            child: None,
            port: free_port(),
            monitor: free_port(),
            store: store.to_owned(),
            extra,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn start(&mut self) {
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server (run `cargo xtask setup`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server with `signal` (SIGTERM: JetStream flushes its store).
    pub(crate) fn stop_with(&mut self, signal: i32) {
        if let Some(mut child) = self.child.take() {
            let pid = i32::try_from(child.id()).unwrap();
            // SAFETY: signalling the child we spawned, by its pid.
            unsafe { libc::kill(pid, signal) };
            child.wait().unwrap();
        }
    }

    /// `/jsz` of this server, with stream details.
    pub(crate) fn jsz(&self) -> Option<Value> {
        let body = http_get(
            &format!("127.0.0.1:{}", self.monitor),
            "/jsz?streams=true&config=true",
        )?;
        serde_json::from_str(&body).ok()
    }

    /// The stream `name` as this server reports it.
    pub(crate) fn stream(&self, name: &str) -> Option<Value> {
        let jsz = self.jsz()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == name)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of `GET path` at `addr` (`None`: no answer).
pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_owned())
}

/// Value of one series in a Prometheus text exposition.
pub(crate) fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Three servers routed to each other as one JetStream cluster.
pub(crate) fn cluster(dir: &Path) -> Vec<Nats> {
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let all = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    (0..3)
        .map(|i| {
            Nats::new(
                &dir.join(format!("n{i}")),
                vec![
                    "--name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "faults".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes".into(),
                    all.clone(),
                ],
            )
        })
        .collect()
}

/// A tmpfs of `mib` MiB at `at`, unmounted on drop (also after a panic).
pub(crate) struct Tmpfs {
    pub(crate) at: PathBuf,
}

impl Tmpfs {
    pub(crate) fn mount(at: &Path, mib: u32) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
            .arg("debugmon-faults")
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs at {}", at.display());
        Self { at: at.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (an agent that has not quite exited): detach now,
            // the kernel frees it when the last user goes.
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

/// Fills the filesystem under `path` with one file until it is full.
pub(crate) fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                break;
            }
        }
    }
    written
}

pub(crate) fn debugmon(args: &[&str]) -> Output {
    Command::new(agent_bin()).args(args).output().unwrap()
}

pub(crate) fn is_ours(r: &Value, tag: &str) -> bool {
    r["kind"] == "exec"
        && r["actor"]["argv"][1]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{tag}-")))
}

/// `debugmon verify --json` over the audit stream at `urls` (exit code, report).
pub(crate) fn verify_stream(urls: &str) -> (Option<i32>, Value) {
    try_verify(urls).unwrap_or_else(|e| panic!("verify --json printed no report: {e}"))
}

/// The same with the host key pinned (`--key`): for a stream that no
/// longer holds the start record announcing it.
pub(crate) fn verify_stream_key(urls: &str, key: &str) -> (Option<i32>, Value) {
    let out = debugmon(&["verify", "--nats", urls, "--json", "--key", key]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn try_verify(urls: &str) -> Result<(Option<i32>, Value), String> {
    // The faults are about delivery, not keys: the stream's own start
    // record names the key (verify_cli tests pinning).
    let out = debugmon(&["verify", "--nats", urls, "--json", "--trust-on-first-use"]);
    match serde_json::from_slice(&out.stdout) {
        Ok(report) => Ok((out.status.code(), report)),
        Err(e) => Err(format!("{e}: {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// The one host of a verify report.
pub(crate) fn only_host(report: &Value) -> &Value {
    let hosts = report["hosts"].as_object().unwrap();
    assert_eq!(hosts.len(), 1, "one host in the stream: {report:#}");
    hosts.values().next().unwrap()
}

/// Waits until the stream holds seq `seq` (polling verify, which reads it all).
pub(crate) fn wait_stream_reaches(urls: &str, seq: u64, timeout: Duration) {
    if let Err(last) = stream_reaches(urls, seq, timeout) {
        panic!("the stream did not reach seq {seq} (at {last})");
    }
}

/// Whether the stream holds seq `seq` within `timeout`; else the last seq
/// it holds.
pub(crate) fn stream_reaches(urls: &str, seq: u64, timeout: Duration) -> Result<(), u64> {
    let deadline = Instant::now() + timeout;
    loop {
        // No report while the stream is not made yet: nothing delivered.
        let report = try_verify(urls).map(|(_, r)| r).unwrap_or_default();
        let last = last_seq(&report);
        if last >= seq {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The last seq of the (one) host in a verify report; 0 when it has none.
fn last_seq(report: &Value) -> u64 {
    report["hosts"]
        .as_object()
        .and_then(|h| h.values().next())
        .and_then(|h| h["last_seq"].as_u64())
        .unwrap_or(0)
}

/// Waits until the stream holds seq `seq` and verify proves all of it, and
/// returns that report. While the agent runs, its last records may wait
/// up to about a second for the signature of a `checkpoint` record
/// (docs/records.md): a report taken as soon as `seq` arrives can rightly
/// name an unsigned tail.
pub(crate) fn wait_stream_proven(urls: &str, seq: u64, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, report) = try_verify(urls).unwrap_or((None, Value::Null));
        if last_seq(&report) >= seq && code == Some(0) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the stream was not proven to seq {seq} within {timeout:?} (exit {code:?}): {report:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The first `n` audit records in the stream at `urls`, in stream order
/// (`tail` waits for live ones past what is stored: `n` is what verify counted).
pub(crate) fn tail_stream(urls: &str, n: u64) -> Vec<Value> {
    let out = debugmon(&[
        "tail",
        "--nats",
        urls,
        "--since",
        "1d",
        "--json",
        "--limit",
        &n.to_string(),
    ]);
    assert!(out.status.success(), "tail: {out:?}");
    out.stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// Seqs of `records`, asserting they strictly increase (in order, once).
pub(crate) fn strictly_increasing(records: &[Value]) -> Vec<u64> {
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    for w in seqs.windows(2) {
        assert!(w[0] < w[1], "stream order: seq {} then {}", w[0], w[1]);
    }
    seqs
}
