//! Exec tracing end to end on the running kernel: the record of a known
//! exec, huge and non-UTF-8 input, an exec storm with exact accounting, and
//! clean shutdown on SIGINT and SIGTERM.

use std::{
    ffi::OsStr,
    os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _},
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use integration_test::{Agent, nonce, own_auid, signal_agent};
use serde_json::Value;

/// Tests that make or count thousands of execs take turns.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn argv_of(r: &Value) -> Vec<String> {
    r["actor"]["argv"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn ancestry_pids(r: &Value) -> Vec<u64> {
    r["actor"]["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect()
}

#[test]
fn exec_of_echo_through_a_shell_gives_exactly_one_exact_record() {
    let agent = Agent::start(&[]);
    let n = nonce("echo");
    let script = format!("exec /bin/echo {n} a b");
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child_pid = u64::from(child.id());
    assert!(child.wait().unwrap().success());

    let want = vec!["/bin/echo".to_owned(), n.clone(), "a".into(), "b".into()];
    let rec = agent.wait_for("the echo exec", Duration::from_secs(30), |r| {
        r["kind"] == "exec" && argv_of(r) == want
    });
    // The shell exec'd echo in place: same pid, and its parent is this test.
    assert_eq!(rec["actor"]["pid"], child_pid, "{rec}");
    assert_eq!(rec["actor"]["ppid"], u64::from(std::process::id()), "{rec}");
    // The executable's real path (/bin is a link to /usr/bin on Debian),
    // checked against the inode the kernel ran.
    let real = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(rec["actor"]["exe"], real.to_str().unwrap(), "{rec}");
    assert_eq!(rec["actor"]["exe_trusted"], true, "{rec}");
    assert_eq!(rec["actor"]["comm"], "echo");
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(rec["actor"]["uid"], uid);
    assert_eq!(rec["actor"]["gid"], gid);
    assert_eq!(rec["actor"]["auid"], own_auid(), "{rec}");
    assert_eq!(rec["schema"], 1);
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(rec["host"]["boot_id"], boot_id.trim());
    assert!(rec["time"].as_str().unwrap().ends_with('Z'));
    let anc = ancestry_pids(&rec);
    assert_eq!(
        anc[0],
        u64::from(std::process::id()),
        "ancestry starts at the test: {rec}"
    );
    // At least 4 levels, or the whole chain up to init when it is shorter
    // (in the VM the tests run right under init).
    assert!(
        anc.len() >= 4 || anc.last() == Some(&1),
        "at least 4 levels of ancestry: {rec}"
    );

    // A chain born after the agent started (fork + exec events, not /proc).
    let n2 = nonce("chain");
    let inner = format!("/bin/sh -c 'exec /bin/echo {n2}'; true");
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(&inner)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let rec2 = agent.wait_for("the nested echo", Duration::from_secs(30), |r| {
        r["kind"] == "exec" && r["actor"]["argv"][1] == n2.as_str()
    });
    let outer = agent.matching(|r| {
        r["kind"] == "exec" && r["actor"]["argv"][2].as_str() == Some(inner.as_str())
    });
    assert_eq!(outer.len(), 1, "one record for the outer shell");
    let anc2 = ancestry_pids(&rec2);
    assert_eq!(
        anc2[0],
        outer[0]["actor"]["pid"].as_u64().unwrap(),
        "{rec2}"
    );
    assert_eq!(anc2[1], u64::from(std::process::id()), "{rec2}");
    assert_eq!(rec2["actor"]["ancestry"][0]["exe"], "/bin/sh");

    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    let hits = st
        .records
        .iter()
        .filter(|r| r["kind"] == "exec" && argv_of(r) == want)
        .count();
    assert_eq!(hits, 1, "exactly one record for the echo exec");
}

#[test]
fn one_mib_argv_and_non_utf8_path_are_truncated_flagged_and_valid_json() {
    let agent = Agent::start(&[]);
    let n = nonce("huge");
    let dir = std::env::temp_dir().join(format!("{n}-dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(OsStr::from_bytes(b"tru\xffe"));
    std::fs::copy("/bin/true", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    // 16 arguments of 64 KiB (1 MiB in all), with invalid UTF-8 inside.
    let mut chunk = vec![b'x'; 64 * 1024];
    chunk[10] = 0xff;
    chunk[11] = 0xfe;
    let mut cmd = Command::new(&exe);
    cmd.arg(&n).arg(OsStr::from_bytes(b"bad\xc3\x28arg"));
    for _ in 0..16 {
        cmd.arg(OsStr::from_bytes(&chunk));
    }
    let st = cmd.status().unwrap();
    assert!(st.success());

    let rec = agent.wait_for("the huge exec", Duration::from_secs(30), |r| {
        r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str()
    });
    let d = &rec["detail"];
    assert_eq!(d["argv_truncated"], true, "{d}");
    assert!(d["argv_bytes"].as_u64().unwrap() > 1024 * 1024, "{d}");
    let escaped: Vec<&str> = d["escaped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(escaped.contains(&"exe") && escaped.contains(&"argv"), "{d}");
    let exe_rendered = rec["actor"]["exe"].as_str().unwrap();
    assert!(exe_rendered.ends_with("/tru\\xffe"), "{exe_rendered}");
    let argv = argv_of(&rec);
    assert_eq!(argv[2], "bad\\xc3(arg");
    assert!(argv.len() >= 3 && argv.len() <= 18);
    let copied: usize = argv.iter().map(String::len).sum();
    assert!(copied < 8 * 1024, "bounded copy, got {copied} bytes");
    assert!(
        argv[3].starts_with("xxxxxxxxxx\\xff\\xfe"),
        "escaped bytes inside an argument"
    );

    std::fs::remove_dir_all(&dir).unwrap();
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
}

/// Unmounts the test's tmpfs and removes its directories, also when an
/// assertion fails half way.
struct CwdFixture {
    base: std::path::PathBuf,
    mounted: Option<std::path::PathBuf>,
}

impl Drop for CwdFixture {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// An agent held with SIGSTOP, resumed on drop: a failed assertion must
/// not leave it stopped, or stopping it at the end would wait forever.
struct StoppedAgent(u32);

impl StoppedAgent {
    /// Returns once the agent is stopped (in the VM the signal comes later).
    fn stop(pid: u32) -> Self {
        signal_agent(pid, libc::SIGSTOP);
        let me = Self(pid);
        let stat = format!("/proc/{pid}/stat");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The state follows the parenthesised comm, which may hold spaces.
        while !std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('T')))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "agent {pid} did not stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        me
    }
}

impl Drop for StoppedAgent {
    fn drop(&mut self) {
        signal_agent(self.0, libc::SIGCONT);
    }
}

#[test]
fn cwd_comes_from_the_kernel_even_when_the_process_is_gone() {
    let agent = Agent::start(&[]);
    let n = nonce("cwd");
    let base = std::env::temp_dir().join(format!("{n}-dir"));
    let mut fx = CwdFixture {
        base: base.clone(),
        mounted: None,
    };
    // A non-UTF-8 name, a mount point to cross, and a removed directory.
    let odd = base.join(OsStr::from_bytes(b"a\xffb")).join("deep");
    std::fs::create_dir_all(&odd).unwrap();
    let mnt = base.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "debugmon-test"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    fx.mounted = Some(mnt.clone());
    let sub = mnt.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let gone = base.join("gone");
    std::fs::create_dir_all(&gone).unwrap();

    // Stopped, the agent cannot read /proc/PID/cwd before each process has
    // exited and been reaped: a cwd in the records came from the kernel.
    let stopped = StoppedAgent::stop(agent.pid());
    let run = |dir: &std::path::Path, tag: &str| {
        let st = Command::new("/bin/true")
            .arg(format!("{n}-{tag}"))
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(st.success());
    };
    run(&odd, "odd");
    run(&sub, "mnt");
    run(std::path::Path::new("/"), "root");
    let st = Command::new("/bin/sh")
        .current_dir(&gone)
        .arg("-c")
        .arg(format!("rmdir \"$PWD\" && exec /bin/true {n}-gone"))
        .status()
        .unwrap();
    assert!(st.success());
    drop(stopped);

    let rec = |tag: &str| {
        let want = format!("{n}-{tag}");
        agent.wait_for(&want, Duration::from_secs(30), |r| {
            r["kind"] == "exec" && r["actor"]["argv"][1] == want.as_str()
        })
    };
    let b = base.display().to_string();
    let odd_rec = rec("odd");
    assert_eq!(
        odd_rec["actor"]["cwd"],
        format!("{b}/a\\xffb/deep"),
        "{odd_rec}"
    );
    let escaped = odd_rec["detail"]["escaped"].as_array().unwrap();
    assert!(escaped.iter().any(|e| e == "cwd"), "{odd_rec}");
    let mnt_rec = rec("mnt");
    assert_eq!(mnt_rec["actor"]["cwd"], format!("{b}/mnt/sub"), "{mnt_rec}");
    let root_rec = rec("root");
    assert_eq!(root_rec["actor"]["cwd"], "/", "{root_rec}");
    let gone_rec = rec("gone");
    assert_eq!(
        gone_rec["actor"]["cwd"],
        format!("{b}/gone (deleted)"),
        "{gone_rec}"
    );

    drop(fx);
    agent.barrier();
    agent.stop().assert_clean();
}

#[test]
fn exec_storm_every_exec_is_a_record_or_counted_as_lost() {
    const EXECS: u64 = 20_000;
    const WORKERS: u64 = 2;
    let _alone = heavy();
    let agent = Agent::start(&[]);
    let n = nonce("storm");
    let started = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                for _ in 0..EXECS / WORKERS {
                    let st = Command::new("/bin/true").arg(&n).status().unwrap();
                    assert!(st.success());
                    started.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let started = started.into_inner();
    assert_eq!(started, EXECS);
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    let ours = st
        .records
        .iter()
        .filter(|r| r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str())
        .count() as u64;
    let lost = st.lost("exec");
    eprintln!("storm: {started} execs started, {ours} records, {lost} execs counted lost");
    assert!(
        ours <= started,
        "more records than execs: {ours} > {started}"
    );
    // Other processes' execs may be among the lost, hence >= rather than ==.
    assert!(
        ours + lost >= started,
        "silent loss: {ours} records + {lost} lost < {started} execs"
    );
    if lost == 0 {
        assert_eq!(ours, started);
    }
}

#[test]
fn stalled_agent_with_a_small_ring_counts_every_dropped_exec() {
    const EXECS: u64 = 10_000;
    // The stalled agent counts every exec on the host as lost: the storm
    // of the test beside it must not run meanwhile.
    let _alone = heavy();
    let agent = Agent::start(&["--ring-mib", "1"]);
    let n = nonce("stall");
    // Stop the consumer so the 1 MiB ring must overflow.
    let stopped = StoppedAgent::stop(agent.pid());
    let mut started = 0u64;
    for _ in 0..EXECS {
        let st = Command::new("/bin/true").arg(&n).status().unwrap();
        assert!(st.success());
        started += 1;
    }
    drop(stopped);
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    let ours = st
        .records
        .iter()
        .filter(|r| r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str())
        .count() as u64;
    let lost = st.lost("exec");
    eprintln!("stall: {started} execs, {ours} records, {lost} counted lost");
    assert!(lost > 0, "a stalled consumer with a 1 MiB ring must drop");
    assert!(
        ours > 0,
        "the ring's content before the overflow is delivered"
    );
    assert!(
        ours + lost >= started,
        "silent loss: {ours} + {lost} < {started}"
    );
    // Background execs on the host are rare; the drops are ours.
    assert!(
        ours + lost <= started + 100,
        "{ours} + {lost} far above {started}"
    );
}

#[test]
fn sigint_drains_and_exits_zero() {
    let agent = Agent::start(&[]);
    let n = nonce("sigint");
    // Queue an exec and stop at once: it must still be in the output.
    let st = Command::new("/bin/true").arg(&n).status().unwrap();
    assert!(st.success());
    let st = agent.stop_with(libc::SIGINT);
    st.assert_clean();
    let hits = st
        .records
        .iter()
        .filter(|r| r["kind"] == "exec" && r["actor"]["argv"][1] == n.as_str())
        .count();
    assert_eq!(hits, 1, "the exec queued before SIGINT was drained");
    assert!(st.stderr.contains("SIGINT received"), "{}", st.stderr);
}

#[test]
fn start_record_names_the_attached_programs_and_the_agent_filters_itself() {
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    agent.barrier();
    let st = agent.stop();
    st.assert_clean();
    let start = &st.records[0];
    assert_eq!(start["detail"]["event"], "started");
    let programs: Vec<&str> = start["detail"]["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for p in [
        "exec_sched_process_exec",
        "fork_sched_process_fork",
        "exit_sched_process_exit",
        "uring_io_uring_complete",
    ] {
        assert!(programs.contains(&p), "{p} attached: {programs:?}");
    }
    // The address-space hook: the program for where this kernel's
    // tracepoint has `write`, which passes over write locks at once.
    let hooks: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| p.starts_with("mem_mmap_lock_start_locking"))
        .collect();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().ok());
    let expected = match (v.next().flatten(), v.next().flatten()) {
        // (mm, memcg_path, write)
        (Some(6), Some(1)) => "mem_mmap_lock_start_locking_w2",
        // (mm, write)
        (Some(6), Some(m)) if m >= 18 => "mem_mmap_lock_start_locking_w1",
        _ => hooks.first().copied().unwrap_or("none"),
    };
    assert_eq!(hooks, [expected], "kernel {release}: {programs:?}");
    assert_eq!(start["detail"]["pid"], pid);
    assert!(
        !st.records.iter().any(|r| r["actor"]["pid"] == pid),
        "no record has the agent itself as actor"
    );
}
