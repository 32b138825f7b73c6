//! The ways around detection and enforcement an attacker would try, each
//! against the real agent on the running kernel: the kill fallback on the
//! host, BPF-LSM in `cargo xtask vm-test`. Every test here failed before
//! the protection moved into the kernel (docs/threat-model.md lists them).
//! Targets are copies of `sleep` or of `dmtool` under a protected name,
//! started by the test and killed by pid.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_test::{Agent, nonce, signal_agent};
use serde_json::Value;
use support::attack::*;

#[test]
fn a_thread_id_or_a_namespace_pid_still_names_the_protected_process() {
    let s = setup();
    let exe = copy(&s.dir, DMTOOL, "dmprotect");
    let mut t = Proc::start(&exe, &["threads", "3"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(t.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let tids: Vec<String> = line.split_whitespace().skip(1).map(str::to_owned).collect();
    assert_eq!(tids.len(), 3, "{line}");
    settled(&s.agent, t.pid(), &exe);
    for tid in &tids {
        for op in ["attach", "vm-read"] {
            let out = dmtool(&[op, tid]);
            assert_stopped(&s.mechanism, &out, &format!("{op} of thread {tid}"));
        }
    }
    // The records name the process, not the thread.
    let rec = s.agent.wait_for("a denial naming the process", WAIT, |r| {
        denial(r, t.pid(), "test-protected")
    });
    assert_eq!(rec["decision"]["severity"], "critical", "{rec}");
    // From inside a new pid namespace, the protected process is pid 2.
    let sub = s.dir.join("ns");
    std::fs::create_dir_all(&sub).unwrap();
    let sleep = copy(&sub, "/bin/sleep", "dmprotect");
    let out = dmtool(&["ns-attach", sleep.to_str().unwrap(), "30"]);
    match s.mechanism.as_str() {
        "kill" => assert_eq!(out.status.code(), Some(10), "ns attach: {}", show(&out)),
        _ => assert_eq!(out.status.code(), Some(2), "ns attach: {}", show(&out)),
    }
    s.agent.stop().assert_clean();
}

#[test]
fn a_protected_program_started_under_a_tracer_never_runs_traced() {
    let s = setup();
    let sleep = copy(&s.dir, "/bin/sleep", "dmprotect");
    let want = if s.mechanism == "kill" { 10 } else { 11 };
    for how in ["trace-exec", "trace-fork-exec"] {
        let out = dmtool(&[how, sleep.to_str().unwrap(), "30"]);
        assert_eq!(out.status.code(), Some(want), "{how}: {}", show(&out));
    }
    let rec = s.agent.wait_for("the traced exec", WAIT, |r| {
        r["detail"]["event"] == "exec_under_trace" && r["decision"]["action"] == "deny"
    });
    assert_eq!(rec["decision"]["rule"], "test-protected", "{rec}");
    assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    assert_eq!(
        rec["actor"]["comm"], "dmtool",
        "the tracer is the actor: {rec}"
    );
    s.agent.stop().assert_clean();
}

#[test]
fn a_policy_reload_leaves_no_moment_unenforced() {
    let s = setup();
    let sleep = copy(&s.dir, "/bin/sleep", "dmprotect");
    let t = Proc::start(&sleep, &["300"]);
    settled(&s.agent, t.pid(), &sleep);
    // Attaches in a tight loop while the policy is reloaded ten times,
    // each reload confirmed by its record before the next.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = t.pid().to_string();
    let attacker = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut attempts, mut through) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = dmtool(&["attach", &pid]);
                attempts += 1;
                if out.status.success() {
                    through.push(show(&out));
                }
            }
            (attempts, through)
        })
    };
    let loaded = |a: &Agent| {
        a.matching(|r| r["kind"] == "policy" && r["detail"]["event"] == "loaded")
            .len()
    };
    for i in 1..=10 {
        let before = loaded(&s.agent);
        signal_agent(s.agent.pid(), libc::SIGHUP);
        let deadline = Instant::now() + WAIT;
        while loaded(&s.agent) == before {
            assert!(Instant::now() < deadline, "reload {i} not recorded");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (attempts, through) = attacker.join().unwrap();
    assert!(attempts > 10, "only {attempts} attempts");
    assert!(
        through.is_empty(),
        "{} of {attempts} attaches went through: {through:?}",
        through.len()
    );
    s.agent.stop().assert_clean();
}

/// The cgroup v2 mount (the kernel's default hierarchy).
fn cgroup2() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let Some(dash) = f.iter().position(|x| *x == "-")
            && f.get(dash + 1) == Some(&"cgroup2")
        {
            return PathBuf::from(f[4]);
        }
    }
    let at = Path::new("/tmp/debugmon-cgroup2");
    std::fs::create_dir_all(at).unwrap();
    let st = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(at)
        .status()
        .unwrap();
    assert!(st.success(), "mounting cgroup2");
    at.to_path_buf()
}

/// Starts `exe` inside cgroup `cg` (from its first instruction).
fn start_in(cg: &Path, exe: &Path) -> Proc {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} 300",
        cg.display(),
        exe.display()
    );
    Proc(
        Command::new("/bin/sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_restarted_unit_is_still_protected() {
    let unit = format!("{}.service", nonce("unit"));
    let policy = format!(
        "rules:\n  - name: test-unit\n    on: [ptrace_attach, mem_read, mem_write]\n    target: {{ unit: [{unit}] }}\n    action: deny\n    severity: high\n"
    );
    let s = setup_with(&policy);
    let cg = cgroup2().join(&unit);
    let sleep = copy(&s.dir, "/bin/sleep", "dmunit");
    for round in 0..2 {
        std::fs::create_dir_all(&cg).unwrap();
        let t = start_in(&cg, &sleep);
        settled(&s.agent, t.pid(), &sleep);
        let out = dmtool(&["attach", &t.pid().to_string()]);
        assert_stopped(&s.mechanism, &out, &format!("attach, start {round}"));
        drop(t);
        // The service stops: its cgroup goes; the restart gets a new one
        // (a new id) under the same name.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::remove_dir(&cg).is_err() {
            assert!(
                Instant::now() < deadline,
                "cgroup {} stays busy",
                cg.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    s.agent.stop().assert_clean();
}

#[test]
fn a_pid_grant_ends_with_its_process_not_with_the_pid() {
    let s = setup();
    let sleep = copy(&s.dir, "/bin/sleep", "dmprotect");
    let a = Proc::start(&sleep, &["300"]);
    let pid = a.pid();
    let first = settled(&s.agent, pid, &sleep);
    let me = integration_test::own_user();
    let out = Command::new(integration_test::agent_bin())
        .args(["grant", "--user", &me, "--target", &format!("pid:{pid}")])
        .args(["--for", "10m", "--reason", "TEST-2"])
        .arg("--socket")
        .arg(s.agent.state.join("control.sock"))
        .output()
        .unwrap();
    assert!(out.status.success(), "grant: {}", show(&out));
    s.agent.wait_for("grant created", WAIT, |r| {
        r["kind"] == "grant" && r["detail"]["event"] == "created"
    });
    let out = dmtool(&["attach", &pid.to_string()]);
    assert!(out.status.success(), "granted attach: {}", show(&out));
    drop(a);
    // Another process takes the pid.
    let spawned = dmtool(&[
        "spawn-pid",
        &pid.to_string(),
        sleep.to_str().unwrap(),
        "300",
    ]);
    assert!(
        spawned.status.success(),
        "spawn with pid {pid}: {}",
        show(&spawned)
    );
    settled_after(&s.agent, pid, &sleep, Some(&first["actor"]["start_ns"]));
    let out = dmtool(&["attach", &pid.to_string()]);
    // SAFETY: ending the process this test started under that pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert_stopped(&s.mechanism, &out, "attach to the pid's new process");
    s.agent.stop().assert_clean();
}

#[test]
fn names_a_user_chooses_neither_exempt_nor_protect() {
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let agent = Agent::start(&["--policies", policies]);
    let dir = std::env::temp_dir().join(nonce("names"));
    std::fs::create_dir_all(&dir).unwrap();
    // A process that calls itself debugmon is not the agent.
    let fake = copy(&dir, "/bin/sleep", "debugmon");
    let f = Proc::start(&fake, &["300"]);
    settled(&agent, f.pid(), &fake);
    let out = dmtool(&["attach", &f.pid().to_string()]);
    assert!(
        out.status.success(),
        "a fake agent is protected: {}",
        show(&out)
    );
    // A tool named gdb asking to be traced is still anti-debugging.
    let gdb = copy(&dir, DMTOOL, "gdb");
    let out = Command::new(&gdb).arg("traceme").output().unwrap();
    assert!(out.status.success(), "traceme: {}", show(&out));
    agent.wait_for("the anti-debug alert for a fake gdb", WAIT, |r| {
        r["decision"]["rule"] == "anti-debug-traceme" && r["actor"]["exe"].as_str() == gdb.to_str()
    });
    // A tool named debugmon is not exempt from the perf rule.
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let tool = copy(&tools, DMTOOL, "debugmon");
    let out = Command::new(&tool)
        .args(["perf", &f.pid().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "perf: {}", show(&out));
    agent.wait_for("the perf alert for a fake debugmon", WAIT, |r| {
        r["decision"]["rule"] == "perf-outside-allowlist"
            && r["actor"]["exe"].as_str() == tool.to_str()
    });
    agent.stop().assert_clean();
}

#[test]
fn a_refusal_the_kernel_makes_itself_is_recorded_as_such_and_kills_nobody() {
    let s = setup();
    let sleep = copy(&s.dir, "/bin/sleep", "dmprotect");
    let t = Proc::start(&sleep, &["300"]);
    settled(&s.agent, t.pid(), &sleep);
    // nobody may not ptrace root's process: the kernel says no on its own.
    // Five times from one process, as a tool retrying: one record, then
    // the repeats as a count.
    let out = dmtool(&[
        "as",
        "65534",
        DMTOOL,
        "attach-retrying",
        &t.pid().to_string(),
        "5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "nobody's attach: {}",
        show(&out)
    );
    let nobody = |r: &Value| {
        r["kind"] == "ptrace"
            && r["actor"]["uid"] == 65534
            && r["detail"]["ptrace_request"] == "PTRACE_ATTACH"
    };
    let rec = s.agent.wait_for("nobody's attempt", WAIT, |r| {
        nobody(r) && r["detail"]["aggregate"] == false
    });
    let agg = s.agent.wait_for("nobody's repeats", WAIT, |r| {
        nobody(r) && r["detail"]["aggregate"] == true
    });
    assert_eq!(agg["detail"]["count"], 4, "{agg}");
    assert_eq!(
        s.agent
            .matching(|r| nobody(r) && r["detail"]["aggregate"] == false)
            .len(),
        1,
        "one record for the first attempt"
    );
    assert_eq!(rec["detail"]["result"], "EPERM", "{rec}");
    assert_eq!(rec["decision"]["action"], "deny", "{rec}");
    // The kernel's own permission check runs before any LSM: neither
    // mechanism had to act, and the record does not claim it did.
    assert!(rec["decision"]["enforced"].is_null(), "{rec}");
    let reason = rec["decision"]["reason"].as_str().unwrap();
    assert!(reason.contains("refused it on its own"), "{reason}");
    // Root's attach is stopped, and its one record says how.
    let out = dmtool(&["attach", &t.pid().to_string()]);
    assert_stopped(&s.mechanism, &out, "root's attach");
    let rec = s.agent.wait_for("root's denial", WAIT, |r| {
        denial(r, t.pid(), "test-protected") && r["actor"]["uid"] == 0
    });
    assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    // The rule's own severity and tags, whichever mechanism acted.
    assert_eq!(rec["decision"]["severity"], "critical", "{rec}");
    assert_eq!(
        rec["decision"]["tags"],
        serde_json::json!(["attack.t1055.008"]),
        "{rec}"
    );
    s.agent.stop().assert_clean();
}

#[test]
fn reaching_for_the_agents_own_maps_is_stopped_and_critical() {
    let s = setup();
    let start = s
        .agent
        .wait_for("start", WAIT, |r| r["detail"]["event"] == "started");
    let maps = start["detail"]["bpf_objects"]["maps"].as_array().unwrap();
    assert!(!maps.is_empty(), "{start}");
    let id = maps[0].as_u64().unwrap().to_string();
    let out = dmtool(&["bpf-map", &id]);
    assert_stopped(
        &s.mechanism,
        &out,
        "BPF_MAP_GET_FD_BY_ID on the agent's map",
    );
    let rec = s.agent.wait_for("the tamper record", WAIT, |r| {
        r["kind"] == "agent"
            && r["detail"]["event"] == "tamper"
            && r["detail"]["object"] == format!("map {id}")
    });
    assert_eq!(rec["decision"]["severity"], "critical", "{rec}");
    assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    s.agent.stop().assert_clean();
}

#[test]
fn io_uring_in_any_shape_meets_the_rule_before_the_memory_moves() {
    let s = setup();
    let sleep = copy(&s.dir, "/bin/sleep", "dmprotect");
    let t = Proc::start(&sleep, &["300"]);
    settled(&s.agent, t.pid(), &sleep);
    // Fixed slots, a skipped completion and an overflowed one are opens no
    // open hook sees: the read that follows is what meets the rule.
    for shape in [
        "plain", "fixed", "alloc", "skip", "defer", "sqpoll", "overflow",
    ] {
        let child = Command::new(DMTOOL)
            .args(["uring", &t.pid().to_string(), shape])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let actor = child.id();
        let out = child.wait_with_output().unwrap();
        assert_ne!(
            out.status.code(),
            Some(3),
            "io_uring unavailable: {}",
            show(&out)
        );
        assert_stopped(&s.mechanism, &out, &format!("io_uring {shape}"));
        assert!(
            out.stdout.is_empty(),
            "{shape}: memory was read: {}",
            show(&out)
        );
        let rec = s.agent.wait_for(&format!("the {shape} denial"), WAIT, |r| {
            denial(r, t.pid(), "test-protected") && r["actor"]["pid"] == actor
        });
        assert_eq!(
            rec["decision"]["enforced"],
            s.mechanism.as_str(),
            "{shape}: {rec}"
        );
    }
    s.agent.stop().assert_clean();
}

#[test]
fn a_program_upgraded_under_its_path_stays_protected_old_and_new() {
    let dir = std::env::temp_dir().join(nonce("upgrade"));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = copy(&dir, "/bin/sleep", "dbserver");
    let policy = format!(
        "rules:\n  - name: test-protected\n    on: [ptrace_attach]\n    target: {{ exe: [{}] }}\n    \
         action: deny\n    severity: critical\n",
        prog.display()
    );
    let s = setup_with(&policy);
    let old = Proc::start(&prog, &["300"]);
    settled(&s.agent, old.pid(), &prog);
    // The upgrade: a new file renamed over the old path.
    let new_file = dir.join("dbserver.new");
    std::fs::copy(DMTOOL, &new_file).unwrap();
    std::fs::rename(&new_file, &prog).unwrap();
    let rec = s.agent.wait_for("the reinstall", WAIT, |r| {
        r["kind"] == "policy" && r["detail"]["event"] == "reinstalled"
    });
    assert!(
        rec["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("dbserver"),
        "{rec}"
    );
    let new = Proc::start(&prog, &["threads", "1"]);
    settled(&s.agent, new.pid(), &prog);
    for (what, p) in [("the old program", &old), ("the new program", &new)] {
        let out = dmtool(&["attach", &p.pid().to_string()]);
        assert_stopped(&s.mechanism, &out, what);
        s.agent
            .wait_for(what, WAIT, |r| denial(r, p.pid(), "test-protected"));
    }
    s.agent.stop().assert_clean();
}

#[test]
fn a_denied_write_never_lands_in_the_target() {
    let s = setup();
    let exe = copy(&s.dir, DMTOOL, "dmprotect");
    let mut t = Proc::start(&exe, &["sentinel"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(t.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().to_owned();
    settled(&s.agent, t.pid(), &exe);
    let out = dmtool(&["vm-write", &t.pid().to_string(), &addr]);
    assert_stopped(&s.mechanism, &out, "process_vm_writev");
    let rec = s.agent.wait_for("the write's denial", WAIT, |r| {
        denial(r, t.pid(), "test-protected")
    });
    assert_eq!(rec["detail"]["via"], "process_vm_writev", "{rec}");
    assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    // The kill fallback kills as the target's memory is locked, before the
    // copy: the target's word never changes.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        t.0.try_wait().unwrap().is_none(),
        "the write landed in the protected process"
    );
    s.agent.stop().assert_clean();
}

#[test]
fn a_child_is_protected_from_its_first_moment() {
    let s = setup();
    let forker = copy(&s.dir, DMTOOL, "dmprotect");
    // The attacker seizes each next pid while the protected process forks
    // a child a millisecond; three rounds of three seconds.
    for round in 1..=3 {
        let out = dmtool(&["race", forker.to_str().unwrap(), "3"]);
        let what = format!("round {round}: {}", show(&out));
        match s.mechanism.as_str() {
            // The seize went through and the attacker died for it.
            "kill" => assert_eq!(out.status.code(), Some(10), "{what}"),
            // Every seize of a child was refused.
            _ => {
                assert_eq!(out.status.code(), Some(1), "{what}");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!err.contains(" 0 refused"), "{what}");
            }
        }
    }
    let rec = s.agent.wait_for("a denial on a new child", WAIT, |r| {
        r["decision"]["action"] == "deny"
            && r["decision"]["rule"] == "test-protected"
            && r["target"]["comm"] == "dmprotect"
            && r["detail"]["ptrace_request"] == "PTRACE_SEIZE"
    });
    assert_eq!(rec["decision"]["enforced"], s.mechanism.as_str(), "{rec}");
    s.agent.stop().assert_clean();
}
