//! Coverage: every way one process can debug or read another is seen in the
//! kernel and recorded with actor and target — real debuggers (gdb, strace,
//! ltrace, perf) and the raw syscalls (scripts/debug_ops.py) against
//! processes these tests start and kill by pid.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use integration_test::{Agent, nonce, uring_open};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A process to debug, killed (by its pid) when dropped.
struct Target(Child);

impl Target {
    fn start() -> Self {
        let c = Command::new("/bin/sleep")
            .arg("300")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Self(c)
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

fn ops() -> String {
    format!("{}/scripts/debug_ops.py", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to completion and returns its pid.
fn run(program: &str, args: &[&str]) -> u32 {
    let mut c = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let pid = c.id();
    let st = c.wait().unwrap();
    assert!(st.success(), "{program} {args:?} failed: {st}");
    pid
}

fn is(r: &Value, kind: &str, actor: u32) -> bool {
    r["kind"] == kind && r["actor"]["pid"] == actor
}

fn request(r: &Value) -> &str {
    r["detail"]["ptrace_request"].as_str().unwrap_or("")
}

#[test]
fn gdb_strace_ltrace_attach_are_recorded_with_request_and_target() {
    let agent = Agent::start(&[]);
    let t = Target::start();
    let tp = t.pid().to_string();
    for (tool, args, exe, req) in [
        (
            "/usr/bin/gdb",
            vec!["-p", &tp, "-batch", "-ex", "info registers rip"],
            "/usr/bin/gdb",
            "PTRACE_ATTACH",
        ),
        (
            "/usr/bin/strace",
            vec!["-o", "/dev/null", "-p", &tp],
            "/usr/bin/strace",
            "PTRACE_SEIZE",
        ),
        (
            "/usr/bin/ltrace",
            vec!["-o", "/dev/null", "-p", &tp],
            "/usr/bin/ltrace",
            "PTRACE_ATTACH",
        ),
    ] {
        // strace and ltrace follow until interrupted: stop them after a moment.
        let mut c = Command::new(tool)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = c.id();
        let rec = agent.wait_for(&format!("{tool} attach"), WAIT, |r| {
            is(r, "ptrace", pid) && request(r) == req && r["target"]["pid"] == t.pid()
        });
        if tool.ends_with("gdb") {
            assert!(c.wait().unwrap().success());
        } else {
            // SAFETY: interrupting the tracer this test started.
            unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGINT) };
            c.wait().unwrap();
        }
        assert_eq!(rec["actor"]["exe"], exe, "{rec}");
        assert_eq!(rec["detail"]["result"], "ok", "{rec}");
        assert_eq!(rec["target"]["comm"], "sleep", "{rec}");
        assert_eq!(rec["target"]["exe"], "/bin/sleep", "{rec}");
        assert_eq!(rec["target"]["uid"], 0, "{rec}");
        assert_eq!(rec["actor"]["user"], "root", "{rec}");
        // The target must be left running, not stopped or killed.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", t.pid())).unwrap();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        assert!(
            state == "S" || state == "R",
            "target state {state} after {tool}"
        );
    }
    // gdb reads registers after attaching: a data request, recorded at once.
    let gdb_regs = agent.matching(|r| {
        r["kind"] == "ptrace"
            && r["actor"]["comm"] == "gdb"
            && r["target"]["pid"] == t.pid()
            && request(r).starts_with("PTRACE_GET")
    });
    assert!(!gdb_regs.is_empty(), "gdb register reads recorded");
    agent.stop().assert_clean();
}

#[test]
fn tracing_a_child_and_traceme_are_recorded() {
    let agent = Agent::start(&[]);
    let n = nonce("child");
    let strace = run("/usr/bin/strace", &["-o", "/dev/null", "/bin/echo", &n]);
    let gdb = run(
        "/usr/bin/gdb",
        &["-batch", "-ex", "run", "--args", "/bin/echo", &n],
    );
    let self_trace = run("/usr/bin/python3", &[&ops(), "traceme"]);

    // strace CMD seizes the child it forked (the one that execs echo).
    let echo_by_strace = agent.wait_for("echo under strace", WAIT, |r| {
        r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str() && r["actor"]["ppid"] == strace
    });
    let child = echo_by_strace["actor"]["pid"].as_u64().unwrap();
    agent.wait_for("strace seizing its child", WAIT, |r| {
        is(r, "ptrace", strace) && request(r) == "PTRACE_SEIZE" && r["target"]["pid"] == child
    });
    // gdb CMD: the forked child asks to be traced.
    agent.wait_for("gdb's child TRACEME", WAIT, |r| {
        r["kind"] == "ptrace" && request(r) == "PTRACE_TRACEME" && r["actor"]["ppid"] == gdb
    });
    let rec = agent.wait_for("self TRACEME", WAIT, |r| {
        is(r, "ptrace", self_trace) && request(r) == "PTRACE_TRACEME"
    });
    assert!(
        rec.get("target").is_none(),
        "TRACEME names no target: {rec}"
    );
    agent.stop().assert_clean();
}

#[test]
fn peek_and_poke_are_recorded_once_then_aggregated_with_counts() {
    let agent = Agent::start(&["--aggregate-window-secs", "1"]);
    let t = Target::start();
    let tp = t.pid().to_string();
    let tracer = run("/usr/bin/python3", &[&ops(), "peek", &tp, "3000"]);
    let first = agent.wait_for("first PEEKDATA", WAIT, |r| {
        is(r, "ptrace", tracer)
            && request(r) == "PTRACE_PEEKDATA"
            && r["detail"]["aggregate"] == false
    });
    assert_eq!(first["detail"]["count"], 1);
    assert_eq!(first["target"]["pid"], t.pid());
    agent.wait_for("POKEDATA", WAIT, |r| {
        is(r, "ptrace", tracer) && request(r) == "PTRACE_POKEDATA"
    });
    let agg = agent.wait_for("aggregated PEEKDATA", WAIT, |r| {
        is(r, "ptrace", tracer)
            && request(r) == "PTRACE_PEEKDATA"
            && r["detail"]["aggregate"] == true
    });
    assert_eq!(agg["detail"]["window_s"], 1);
    let st = agent.stop();
    st.assert_clean();
    let peeks: Vec<&Value> = st
        .records
        .iter()
        .filter(|r| is(r, "ptrace", tracer) && request(r) == "PTRACE_PEEKDATA")
        .collect();
    let total: u64 = peeks
        .iter()
        .map(|r| r["detail"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3000, "every PEEKDATA counted exactly once");
    assert!(
        peeks.len() <= 5,
        "{} records for 3000 calls: not aggregated",
        peeks.len()
    );
}

#[test]
fn process_vm_and_proc_files_and_pidfd_are_mem_access_records() {
    let agent = Agent::start(&[]);
    let t = Target::start();
    let tp = t.pid().to_string();
    let vm = run("/usr/bin/python3", &[&ops(), "vm", &tp]);
    let pm = run("/usr/bin/python3", &[&ops(), "procmem", &tp]);
    let env = run("/usr/bin/python3", &[&ops(), "environ", &tp]);
    let pfd = run("/usr/bin/python3", &[&ops(), "pidfd", &tp]);
    let on_target = |r: &Value| r["target"]["pid"] == t.pid() && r["target"]["comm"] == "sleep";
    for (actor, via, access) in [
        (vm, "process_vm_readv", "read"),
        (vm, "process_vm_writev", "write"),
        (pm, "proc_mem", "read"),
        (pm, "proc_mem", "write"),
        (env, "proc_environ", "read"),
        (pfd, "pidfd_getfd", "fd"),
    ] {
        agent.wait_for(&format!("{via} {access}"), WAIT, |r| {
            is(r, "mem_access", actor)
                && r["detail"]["via"] == via
                && r["detail"]["access"] == access
                && on_target(r)
        });
    }
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    // The literal /proc/PID/mem opens: seen at entry, sent once at exit
    // with their result (the exit's own check must not add a second).
    let mem: Vec<&Value> = st
        .records
        .iter()
        .filter(|r| is(r, "mem_access", pm) && r["detail"]["via"] == "proc_mem")
        .collect();
    assert_eq!(mem.len(), 2, "{mem:?}");
    assert!(mem.iter().all(|r| r["detail"]["result"] == "ok"), "{mem:?}");
}

#[test]
fn proc_mem_opened_without_its_literal_path_is_still_recorded() {
    let agent = Agent::start(&[]);
    let t = Target::start();
    let tp = t.pid().to_string();
    let tmp = std::env::temp_dir().join(format!("debugmon-via-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let via = |how: &str| {
        run(
            "/usr/bin/python3",
            &[&ops(), "procmem_via", &tp, how, tmp.to_str().unwrap()],
        )
    };
    // One actor per way, each expected exactly once.
    let want = [
        (via("task"), "proc_mem", "read"),
        (via("link"), "proc_mem", "write"),
        (via("rel"), "proc_mem", "read"),
        (via("dirfd"), "proc_environ", "read"),
    ];
    // Neither a handle that cannot read (O_PATH) nor a process's own memory.
    let silent = [via("path"), via("self")];
    std::fs::remove_dir_all(&tmp).unwrap();
    let (last, ..) = want[3];
    agent.wait_for("environ through a dirfd", WAIT, |r| {
        is(r, "mem_access", last)
    });
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    for (actor, via, access) in want {
        let mine: Vec<&Value> = st
            .records
            .iter()
            .filter(|r| is(r, "mem_access", actor))
            .collect();
        assert_eq!(mine.len(), 1, "{via} {access}: {mine:?}");
        let r = mine[0];
        assert_eq!(r["detail"]["via"], via, "{r}");
        assert_eq!(r["detail"]["access"], access, "{r}");
        assert_eq!(r["detail"]["result"], "ok", "{r}");
        assert_eq!(r["target"]["pid"], t.pid(), "{r}");
        assert_eq!(r["target"]["comm"], "sleep", "{r}");
    }
    for actor in silent {
        assert!(
            !st.records.iter().any(|r| is(r, "mem_access", actor)),
            "O_PATH or self open reported"
        );
    }
}

#[test]
fn proc_mem_opened_through_io_uring_is_recorded() {
    let agent = Agent::start(&[]);
    let t = Target::start();
    let me = std::process::id();
    // Its memory is sleep's once it has exec'd, not the forked test's.
    agent.wait_for("the target's exec", WAIT, |r| is(r, "exec", t.pid()));
    let mem = uring_open(&format!("/proc/{}/mem", t.pid()), libc::O_RDONLY);
    assert!(mem >= 0, "io_uring open of the target's mem: {mem}");
    // Its own memory, as the open syscall's exit: not reported.
    let own = uring_open("/proc/self/mem", libc::O_RDONLY);
    // An ordinary file through io_uring: not a memory access.
    let plain = uring_open("/etc/hostname", libc::O_RDONLY);
    assert!(own >= 0 && plain >= 0);
    for fd in [mem, own, plain] {
        // SAFETY: descriptors io_uring opened for this test.
        unsafe { libc::close(fd) };
    }
    let mine = |r: &Value| is(r, "mem_access", me);
    agent.wait_for("the io_uring open", WAIT, mine);
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    let got: Vec<&Value> = st.records.iter().filter(|r| mine(r)).collect();
    assert_eq!(got.len(), 1, "only the target's mem: {got:?}");
    let r = got[0];
    assert_eq!(r["detail"]["via"], "proc_mem", "{r}");
    assert_eq!(r["detail"]["access"], "read", "{r}");
    assert_eq!(r["detail"]["io_uring"], true, "{r}");
    assert_eq!(r["detail"]["result"], "ok", "{r}");
    assert_eq!(r["target"]["pid"], t.pid(), "{r}");
    assert_eq!(r["target"]["comm"], "sleep", "{r}");
}

#[test]
fn perf_on_another_pid_and_bpf_loads_are_recorded() {
    let agent = Agent::start(&[]);
    let t = Target::start();
    let tp = t.pid().to_string();
    let perf = run(
        "/usr/bin/perf",
        &["stat", "-e", "task-clock", "-p", &tp, "--", "sleep", "0.2"],
    );
    let name = format!("dm{}", std::process::id() % 100_000);
    let loader = run("/usr/bin/python3", &[&ops(), "bpf", &name]);
    let rec = agent.wait_for("perf attach", WAIT, |r| {
        is(r, "perf_attach", perf) && r["target"]["pid"] == t.pid()
    });
    assert_eq!(rec["detail"]["perf_type"], "software", "{rec}");
    assert_eq!(rec["detail"]["system_wide"], false);
    let rec = agent.wait_for("bpf load", WAIT, |r| is(r, "bpf", loader));
    assert_eq!(rec["detail"]["prog_type"], "socket_filter", "{rec}");
    assert_eq!(rec["detail"]["prog_name"], name.as_str(), "{rec}");
    assert_eq!(rec["detail"]["result"], "ok", "{rec}");
    agent.stop().assert_clean();
}

#[test]
fn strace_f_of_a_busy_loop_gives_aggregates_not_a_flood() {
    let agent = Agent::start(&["--aggregate-window-secs", "1"]);
    let script = "import os\nfor _ in range(20000): os.getppid()\n";
    let strace = run(
        "/usr/bin/strace",
        &["-f", "-o", "/dev/null", "/usr/bin/python3", "-c", script],
    );
    agent.barrier();
    // Wait for the window to close so the aggregates are out.
    agent.wait_for("an aggregate from strace", WAIT, |r| {
        is(r, "ptrace", strace) && r["detail"]["aggregate"] == true
    });
    let st = agent.stop();
    st.assert_clean();
    let recs: Vec<&Value> = st
        .records
        .iter()
        .filter(|r| is(r, "ptrace", strace))
        .collect();
    let calls: u64 = recs
        .iter()
        .map(|r| r["detail"]["count"].as_u64().unwrap())
        .sum();
    eprintln!(
        "strace -f: {} records stand for {calls} ptrace data requests",
        recs.len()
    );
    assert!(calls >= 20_000, "the syscall stops were counted: {calls}");
    assert!(
        recs.len() < 60,
        "{} records: the stream was not aggregated",
        recs.len()
    );
}

#[test]
fn sudo_keeps_the_login_user_as_auid() {
    let agent = Agent::start(&[]);
    let t = Target::start();
    let tp = t.pid().to_string();
    // A login as `nobody` (uid 65534) that then runs gdb through sudo.
    let script = format!(
        "echo 65534 > /proc/self/loginuid && exec sudo /usr/bin/gdb -p {tp} -batch -ex 'info registers rip'"
    );
    let sh = run("/bin/sh", &["-c", &script]);
    let rec = agent.wait_for("gdb via sudo attaching", WAIT, |r| {
        r["kind"] == "ptrace"
            && request(r) == "PTRACE_ATTACH"
            && r["target"]["pid"] == t.pid()
            && r["actor"]["comm"] == "gdb"
    });
    assert_eq!(rec["actor"]["uid"], 0, "{rec}");
    assert_eq!(rec["actor"]["auid"], 65534, "{rec}");
    assert_eq!(rec["actor"]["login_user"], "nobody", "{rec}");
    let anc: Vec<&str> = rec["actor"]["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["comm"].as_str().unwrap())
        .collect();
    assert!(
        anc.contains(&"sudo"),
        "sudo in the ancestry: {anc:?} (shell {sh})"
    );
    agent.stop().assert_clean();
}

#[test]
fn process_in_new_user_and_pid_namespaces_is_attributed_with_host_pid_and_ns_ids() {
    let agent = Agent::start(&[]);
    let n = nonce("ns");
    let script = format!("exec /bin/echo {n}");
    run(
        "/usr/bin/unshare",
        &["-Urpf", "--mount-proc", "/bin/sh", "-c", &script],
    );
    let rec = agent.wait_for("exec inside the namespaces", WAIT, |r| {
        r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str()
    });
    let own_ns = |kind: &str| -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .ino()
    };
    let ns = &rec["actor"]["namespaces"];
    assert_ne!(
        ns["pid"].as_u64().unwrap(),
        own_ns("pid"),
        "new pid namespace: {rec}"
    );
    assert_ne!(
        ns["user"].as_u64().unwrap(),
        own_ns("user"),
        "new user namespace: {rec}"
    );
    assert_eq!(
        ns["ns_pid"], 1,
        "the first process of the new pid namespace: {rec}"
    );
    let host_pid = rec["actor"]["pid"].as_u64().unwrap();
    assert!(host_pid > 1, "host pid, not the namespace pid: {rec}");
    assert!(rec["actor"]["cgroup_id"].as_u64().unwrap() > 0, "{rec}");
    assert_eq!(rec["actor"]["uid"], 0, "root in the host's view: {rec}");
    agent.stop().assert_clean();
}

fn shipped_policies() -> String {
    format!("{}/../../policies", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn debugger_exec_carries_the_class_from_policy_data() {
    let agent = Agent::start(&["--policies", &shipped_policies()]);
    let gdb = run("/usr/bin/gdb", &["--version"]);
    let rec = agent.wait_for("gdb exec", WAIT, |r| is(r, "exec", gdb));
    assert_eq!(rec["detail"]["debugger"], "gdb", "{rec}");
    let echo = run("/bin/echo", &["x"]);
    let rec = agent.wait_for("echo exec", WAIT, |r| is(r, "exec", echo));
    assert!(rec["detail"].get("debugger").is_none(), "{rec}");
    agent.stop().assert_clean();
}

#[test]
fn benign_workload_yields_no_debug_class_records() {
    let agent = Agent::start(&["--policies", &shipped_policies()]);
    let dir = std::env::temp_dir().join(nonce("benign"));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n",
    )
    .unwrap();
    let bin = dir.join("hello");
    let script = format!(
        "cc -O1 -o {bin} {src} && {bin} && seq 1 2000 | sort -r | uniq | wc -l && \
         python3 -c 'import json,os; print(len(json.dumps(dict(os.environ))))' && ls /proc/self/ >/dev/null",
        bin = bin.display(),
        src = src.display()
    );
    let workload = run("/bin/sh", &["-c", &script]);
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    std::fs::remove_dir_all(&dir).unwrap();
    let in_workload = |r: &Value| {
        r["actor"]["pid"] == workload
            || r["actor"]["ancestry"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["pid"] == workload))
    };
    let execs = st
        .records
        .iter()
        .filter(|r| r["kind"] == "exec" && in_workload(r))
        .count();
    assert!(execs >= 5, "the workload ran ({execs} execs seen)");
    let debug: Vec<&Value> = st
        .records
        .iter()
        .filter(|r| in_workload(r))
        .filter(|r| {
            matches!(
                r["kind"].as_str(),
                Some("ptrace" | "mem_access" | "perf_attach" | "bpf")
            )
        })
        .collect();
    eprintln!(
        "benign workload: {execs} execs, {} debug-class records",
        debug.len()
    );
    assert!(debug.is_empty(), "false positives: {debug:?}");
}
