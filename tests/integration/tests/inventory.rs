//! The host inventory against real processes started before the agent: a
//! `sleep` traced by a renamed copy of strace (a tracer that is no known
//! debugger) and another by strace itself, a Python listener on
//! debugpy's port on every address, a `sleep` started with `LD_PRELOAD`.
//! `debugmon inventory --json` (no agent running) must report each with
//! its pid and details; then the agent's `inventory` records at start and
//! at its interval must carry them, and the shipped rules must alert on
//! the foreign tracer, the open debug port and the preload, and not on
//! strace.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use integration_test::{Agent, agent_bin, nonce, require_root};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
/// debugpy's default port: a Python listening there is a debug interface.
const DEBUGPY_PORT: u16 = 5678;

/// A process the test started, killed by its pid on drop.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cmd: &mut Command) -> Proc {
    Proc(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Waits until `pid`'s status names `tracer` as its tracer.
fn wait_traced(pid: u32, tracer: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = format!("TracerPid:\t{tracer}\n");
    while Instant::now() < deadline {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.contains(&want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{pid} was not traced by {tracer} within 20 s");
}

/// A library every Debian system has, to preload into `sleep`.
fn a_library() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/aarch64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libm.so.6 is not where Debian puts it")
}

fn alerted(r: &Value, rule: &str) -> bool {
    r["decision"]["action"] == "alert" && r["decision"]["rule"] == rule
}

fn by_pid<'a>(list: &'a Value, key: &str, pid: u32) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e[key]["pid"] == pid)
}

/// The processes of the test: tracees, tracers, listener, preloaded.
struct Scene {
    tracee: Proc,
    tracer: Proc,
    strace_tracee: Proc,
    strace: Proc,
    listener: Proc,
    preloaded: Proc,
}

fn scene(dir: &Path) -> Scene {
    let tracee = start(Command::new("/bin/sleep").arg("300"));
    // A renamed copy: the same program, but no debugger by its name or path.
    let helper = dir.join("tracehelper");
    std::fs::copy("/usr/bin/strace", &helper).expect("strace (cargo xtask setup installs it)");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tracer =
        start(Command::new(&helper).args(["-o", "/dev/null", "-p", &tracee.pid().to_string()]));
    wait_traced(tracee.pid(), tracer.pid());
    let strace_tracee = start(Command::new("/bin/sleep").arg("301"));
    let strace = start(Command::new("/usr/bin/strace").args([
        "-o",
        "/dev/null",
        "-p",
        &strace_tracee.pid().to_string(),
    ]));
    wait_traced(strace_tracee.pid(), strace.pid());
    let script = format!(
        "import socket, sys, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', {DEBUGPY_PORT}))\n\
         s.listen()\n\
         print('ready', flush=True)\n\
         time.sleep(300)\n"
    );
    let mut listener = start(Command::new("/usr/bin/python3").args(["-c", &script]));
    let mut line = String::new();
    BufReader::new(listener.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "the listener could not bind 0.0.0.0:{DEBUGPY_PORT}"
    );
    let preloaded = start(
        Command::new("/bin/sleep")
            .arg("302")
            .env("LD_PRELOAD", a_library()),
    );
    Scene {
        tracee,
        tracer,
        strace_tracee,
        strace,
        listener,
        preloaded,
    }
}

/// What `debugmon inventory --json` reports, with the agent not running;
/// the report, for the agent's to be compared with.
fn check_command(s: &Scene) -> Value {
    let out = Command::new(agent_bin())
        .args(["inventory", "--json", "--policies", POLICIES])
        .output()
        .unwrap();
    assert!(out.status.success(), "debugmon inventory: {out:?}");
    let inv: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = by_pid(&inv["traced"], "process", s.tracee.pid()).unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(t["tracer"]["pid"], s.tracer.pid(), "{t}");
    assert_eq!(t["tracer"]["comm"], "tracehelper", "{t}");
    assert_eq!(t["debugger"], Value::Null, "{t}");
    assert_eq!(
        t["findings"],
        serde_json::json!(["traced", "traced:non_debugger"]),
        "{t}"
    );
    let t = by_pid(&inv["traced"], "process", s.strace_tracee.pid())
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(t["tracer"]["pid"], s.strace.pid(), "{t}");
    assert_eq!(t["debugger"], "strace", "{t}");
    let p = by_pid(&inv["debug_ports"], "process", s.listener.pid())
        .unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(p["port"], DEBUGPY_PORT, "{p}");
    assert_eq!(p["bind"], "0.0.0.0", "{p}");
    assert_eq!(p["interface"], "debugpy", "{p}");
    assert_eq!(p["risk"], "any_address", "{p}");
    let w =
        by_pid(&inv["switches"], "process", s.preloaded.pid()).unwrap_or_else(|| panic!("{inv:#}"));
    assert_eq!(w["switches"][0]["interface"], "ld_preload", "{w}");
    assert_eq!(w["switches"][0]["via"], "env:LD_PRELOAD", "{w}");
    // The kernel settings are this kernel's.
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .map(|s| s.trim().parse::<i64>().unwrap());
    assert_eq!(
        inv["kernel"]["ptrace_scope"],
        serde_json::json!(scope),
        "{inv:#}"
    );
    let paranoid: i64 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(inv["kernel"]["perf_event_paranoid"], paranoid);
    let bpf_lsm = std::fs::read_to_string("/sys/kernel/security/lsm")
        .ok()
        .map(|l| l.trim().split(',').any(|m| m == "bpf"));
    assert_eq!(inv["kernel"]["bpf_lsm"], serde_json::json!(bpf_lsm));
    assert!(
        inv["debuggers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["class"] == "strace" && d["path"] == "/usr/bin/strace"),
        "{}",
        inv["debuggers"]
    );
    // The table says the same for a person.
    let out = Command::new(agent_bin())
        .args(["inventory", "--policies", POLICIES])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        table.contains(&format!("traced by {} tracehelper", s.tracer.pid()))
            && table.contains(&format!(
                "0.0.0.0:{DEBUGPY_PORT} [any_address]  {} ",
                s.listener.pid()
            )),
        "{table}"
    );
    inv
}

#[test]
fn inventory_reports_tracers_debug_ports_and_preloads_and_the_agent_alerts() {
    require_root();
    let dir = std::env::temp_dir().join(nonce("inventory"));
    std::fs::create_dir_all(&dir).unwrap();
    let s = scene(&dir);
    let inv = check_command(&s);
    // The agent takes an inventory at start and then every 2 s here.
    let agent = Agent::start_env(
        &["--policies", POLICIES],
        &[("DEBUGMON_INVENTORY_INTERVAL_SECS", "2")],
    );
    let snapshot = agent.wait_for("the start inventory", WAIT, |r| {
        r["kind"] == "inventory" && r["detail"]["event"] == "snapshot"
    });
    // Taken at start: the record right after the start record.
    let started = agent.wait_for("the start record", WAIT, |r| {
        r["kind"] == "agent" && r["detail"]["event"] == "started"
    });
    assert_eq!(
        snapshot["seq"].as_u64(),
        started["seq"].as_u64().map(|s| s + 1),
        "{snapshot}"
    );
    assert_eq!(started["detail"]["inventory_s"], 2, "{started}");
    assert!(
        snapshot["hash"].is_string() && snapshot.get("actor").is_none(),
        "{snapshot}"
    );
    // The agent reads the same kernel settings and debuggers.
    assert_eq!(snapshot["detail"]["kernel"], inv["kernel"], "{snapshot}");
    assert_eq!(
        snapshot["detail"]["debuggers"], inv["debuggers"],
        "{snapshot}"
    );
    assert!(
        by_pid(&snapshot["detail"]["traced"], "process", s.tracee.pid()).is_some(),
        "{snapshot}"
    );
    let finding = |what: &str, finding: &'static str, pid: u32| {
        agent.wait_for(what, WAIT, move |r| {
            r["kind"] == "inventory"
                && r["detail"]["finding"] == finding
                && r["actor"]["pid"] == pid
        })
    };
    let r = finding("the foreign tracer", "traced", s.tracer.pid());
    assert_eq!(r["target"]["pid"], s.tracee.pid(), "{r}");
    assert_eq!(r["actor"]["comm"], "tracehelper", "{r}");
    assert!(alerted(&r, "inventory-traced-by-a-non-debugger"), "{r}");
    assert!(
        r["decision"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "attack.t1055.008"),
        "{r}"
    );
    let r = finding("strace tracing", "traced", s.strace.pid());
    assert_eq!(r["target"]["pid"], s.strace_tracee.pid(), "{r}");
    assert_eq!(r["detail"]["tracer_debugger"], "strace", "{r}");
    assert!(
        r.get("decision").is_none(),
        "a debugger tracing is no alert: {r}"
    );
    let r = finding("the debug port", "debug_port", s.listener.pid());
    assert_eq!(
        (
            &r["detail"]["port"],
            &r["detail"]["bind"],
            &r["detail"]["interface"]
        ),
        (&DEBUGPY_PORT.into(), &"0.0.0.0".into(), &"debugpy".into()),
        "{r}"
    );
    assert!(alerted(&r, "inventory-debug-port-on-every-address"), "{r}");
    let r = finding("the preload", "debug_switches", s.preloaded.pid());
    assert_eq!(r["detail"]["switches"][0]["interface"], "ld_preload", "{r}");
    assert!(
        alerted(&r, "inventory-library-preloaded-in-a-process"),
        "{r}"
    );
    // And again at the interval.
    let first = snapshot["seq"].as_u64().unwrap();
    let again = agent.wait_for("the next inventory", WAIT, |r| {
        r["kind"] == "inventory"
            && r["detail"]["event"] == "snapshot"
            && r["seq"].as_u64().unwrap() > first
    });
    assert!(
        by_pid(&again["detail"]["debug_ports"], "process", s.listener.pid()).is_some(),
        "{again}"
    );
    drop(s);
    agent.stop().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}
