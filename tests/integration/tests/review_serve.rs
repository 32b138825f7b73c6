//! `debugmon review --serve` in a real browser: a real nats-server, the
//! agent shipping to it, the page serving that stream, and Debian's
//! chromium driven by playwright-core (`tests/integration/browser/
//! review_page.js`; both installed by `cargo xtask setup`). The page
//! loads and goes live; a ptrace this test makes of a child it started
//! (an attach and a PTRACE_PEEKDATA, which the shipped policy alerts on)
//! appears without a reload, among the alerts too; an exec whose argv is
//! `<script>` and `<img onerror>` shows as text and runs nothing; `?kind=ptrace&target=PID` narrows the list to it; its detail
//! view says it verified (`ok`) against the agent's pinned key. The
//! browser's screenshots go to `target/review-screenshots/`, and with
//! `DEBUGMON_UPDATE_SCREENSHOTS=1` to `docs/img/` as well.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use integration_test::{
    Agent, agent_bin,
    nats::{Nats, free_port},
    nonce, require_root,
};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
/// An argv of markup: the page must show it as text.
const EVIL_SCRIPT: &str = "<script>document.title='pwned'</script>";
const EVIL_IMG: &str = "<img src=x onerror=alert(1)>";
/// The uid of `nobody`: the traced child's owner.
const NOBODY: u32 = 65534;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Kills and reaps a child this test started, by its pid, when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            eprintln!("  | {l}");
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line that starts with `prefix`; panics when the child ends
/// first or nothing comes within `within`.
fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str, within: Duration) -> String {
    loop {
        match rx.recv_timeout(within) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line starting with {prefix:?} ({e})"),
        }
    }
}

/// The JSON of a `STEP name {...}` line.
fn step(rx: &mpsc::Receiver<String>, name: &str) -> Value {
    let l = expect_line(rx, &format!("STEP {name} "), Duration::from_secs(60));
    serde_json::from_str(&l[format!("STEP {name} ").len()..]).unwrap()
}

/// PTRACE_ATTACH to `pid`, wait for its stop, read one word of its
/// memory with PTRACE_PEEKDATA (from a program that is no debugger: the
/// shipped policy alerts), PTRACE_DETACH. Nothing in the child changes.
fn attach_peek_detach(pid: i32) {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let start = maps
        .lines()
        .next()
        .and_then(|l| l.split('-').next())
        .map(|a| usize::from_str_radix(a, 16).unwrap())
        .unwrap();
    // SAFETY: ptrace and waitpid on a child this test started and owns;
    // the same thread attaches, waits, reads and detaches.
    unsafe {
        assert_eq!(
            libc::ptrace(libc::PTRACE_ATTACH, pid, 0usize, 0usize),
            0,
            "PTRACE_ATTACH {pid}: {}",
            std::io::Error::last_os_error()
        );
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, libc::__WALL), pid);
        *libc::__errno_location() = 0;
        libc::ptrace(libc::PTRACE_PEEKDATA, pid, start, 0usize);
        assert_eq!(
            *libc::__errno_location(),
            0,
            "PTRACE_PEEKDATA {pid} {start:#x}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize), 0);
    }
}

#[test]
fn the_review_page_shows_a_ptrace_live_filters_it_and_verifies_it() {
    require_root();
    let driver = workspace().join("target/review-browser");
    assert!(
        driver.join("node_modules/playwright-core").is_dir() && Path::new(CHROMIUM).exists(),
        "playwright-core in {} and {CHROMIUM} are needed: run `cargo xtask setup`",
        driver.display()
    );
    let dir = std::env::temp_dir().join(nonce("review-serve"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let _nats = Nats::start(port, &dir.join("jetstream"));
    let policies = workspace().join("policies").display().to_string();
    let agent = Agent::start_env(
        &["--policies", &policies],
        &[
            ("DEBUGMON_NATS_ENABLED", "true"),
            ("DEBUGMON_NATS_URLS", url.as_str()),
            ("DEBUGMON_NATS_MAX_BYTES", "1GiB"),
        ],
    );
    let started = agent.wait_for("the start record", Duration::from_secs(10), |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "started"
    });
    let key = started["detail"]["public_key"].as_str().unwrap().to_owned();

    let mut serve = Command::new(agent_bin())
        .args([
            "review",
            "--serve",
            "--listen",
            "127.0.0.1:0",
            "--nats",
            &url,
        ])
        .args(["--key", &key])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let serve_out = lines_of(serve.stdout.take().unwrap());
    let _serve = Started(serve);
    let line = expect_line(
        &serve_out,
        "debugmon review: serving ",
        Duration::from_secs(30),
    );
    let base = line
        .trim_start_matches("debugmon review: serving ")
        .trim_end_matches('/')
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // The traced child, another user's.
    let target = Started(
        Command::new("/bin/sleep")
            .arg("120")
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap(),
    );
    let pid = target.0.id();

    let shots = workspace().join("target/review-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = Command::new("node")
        .arg(workspace().join("tests/integration/browser/review_page.js"))
        .args([&driver, Path::new(CHROMIUM)])
        .arg(&base)
        .arg(pid.to_string())
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = lines_of(browser.stdout.take().unwrap());
    let mut stdin = browser.stdin.take().unwrap();
    let browser = Started(browser);

    let loaded = step(&out, "loaded");
    assert_eq!(loaded["title"], "debugmon review", "{loaded}");
    assert!(
        loaded["csp"]
            .as_str()
            .unwrap()
            .contains("script-src 'self'"),
        "{loaded}"
    );
    expect_line(&out, "READY", Duration::from_secs(30));
    attach_peek_detach(i32::try_from(pid).unwrap());
    let st = Command::new("/bin/true")
        .args([EVIL_SCRIPT, EVIL_IMG])
        .status()
        .unwrap();
    assert!(st.success());
    writeln!(stdin, "GO").unwrap();
    stdin.flush().unwrap();

    let live = step(&out, "live");
    assert_eq!(
        live["url"].as_str().unwrap(),
        format!("{base}/"),
        "no navigation: {live}"
    );
    assert_ne!(live["version"], loaded["version"], "{live}");
    assert!(live["matching"].as_u64().unwrap() >= 1, "{live}");
    assert!(
        live["in_alerts"].as_u64().unwrap() >= 1,
        "the attach is among the live alerts: {live}"
    );

    let inert = step(&out, "inert");
    assert_eq!(inert["title"], "debugmon review", "{inert}");
    assert_eq!(inert["scripts"], serde_json::json!(["/live.js"]), "{inert}");
    assert_eq!(inert["images"], 0, "{inert}");
    let text = inert["text"].as_str().unwrap();
    assert!(
        text.contains(EVIL_SCRIPT) && text.contains(EVIL_IMG),
        "{inert}"
    );

    let filtered = step(&out, "filtered");
    assert_eq!(
        filtered["kinds"],
        serde_json::json!(["ptrace"]),
        "{filtered}"
    );
    assert_eq!(
        filtered["pids"],
        serde_json::json!([pid.to_string()]),
        "{filtered}"
    );
    assert_eq!(filtered["form_kind"], "ptrace", "{filtered}");
    let narrowed = filtered["rows"].as_u64().unwrap();
    assert!(
        narrowed >= 1 && narrowed < live["rows"].as_u64().unwrap(),
        "the filter narrows the list: {filtered} vs {live}"
    );

    let detail = step(&out, "detail");
    assert_eq!(detail["verdict"], "ok", "{detail}");
    assert_eq!(detail["has_target"], true, "{detail}");
    assert_eq!(detail["kind_ptrace"], true, "{detail}");
    let errors = step(&out, "errors");
    assert_eq!(errors["errors"], serde_json::json!([]), "{errors}");

    let mut browser = browser;
    let status = browser.0.wait().unwrap();
    assert!(status.success(), "the browser script failed: {status}");

    if std::env::var_os("DEBUGMON_UPDATE_SCREENSHOTS").is_some() {
        let img = workspace().join("docs/img");
        std::fs::create_dir_all(&img).unwrap();
        for f in ["review-live.png", "review-detail.png"] {
            std::fs::copy(shots.join(f), img.join(f)).unwrap();
        }
    }
    drop(target);
    let stopped = agent.stop();
    stopped.assert_clean();
}

/// The command refuses an exposed address without TLS and a token before
/// it reads or binds anything, and a token only in a flag does not exist.
#[test]
fn serving_off_loopback_without_tls_and_a_token_is_refused() {
    let base = [
        "review",
        "--serve",
        "--file",
        "/dev/null",
        "--trust-on-first-use",
    ];
    let out = Command::new(agent_bin())
        .args(base)
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("DEBUGMON_REVIEW_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    let out = Command::new(agent_bin())
        .args(base)
        .args(["--listen", "0.0.0.0:0", "--token", "s3cret"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "no --token flag");
    let out = Command::new(agent_bin())
        .args(["review", "--file", "/dev/null", "--trust-on-first-use"])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--listen needs --serve");
}
