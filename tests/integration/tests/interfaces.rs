//! Debug interfaces beyond ptrace, each against the real thing beside the
//! agent on the shipped policies: a JVM started with JDWP on every address
//! and attached to with jcmd, Node's inspector switched on at launch and
//! by SIGUSR1, a library preloaded from /tmp, /etc/ld.so.preload written,
//! another process's mapped file and memfd opened through /proc, a core
//! dump of a protected process, /proc/kcore where the kernel has it.
//! Each record must be there with its actor, target and interface, and
//! the shipped rule must alert.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use integration_test::{Agent, nonce};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A process the test started, killed by pid on drop.
struct Proc(Child);

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
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The agent on the shipped policies plus `site` (a policy file's text).
fn agent(dir: &Path, site: &str) -> Agent {
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/site.yaml"), site).unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let site = dir.join("site").display().to_string();
    Agent::start(&["--policies", shipped, "--policies", &site])
}

fn alerted(r: &Value, rule: &str) -> bool {
    r["decision"]["action"] == "alert" && r["decision"]["rule"] == rule
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

#[test]
fn a_jvm_with_jdwp_on_every_address_and_jcmd_attaching() {
    let (Some(java), Some(jcmd)) = (tool("java"), tool("jcmd")) else {
        panic!("OpenJDK is not installed (cargo xtask test installs openjdk-17-jdk-headless)");
    };
    let dir = std::env::temp_dir().join(nonce("jvm"));
    let agent = agent(&dir, "rules: []\n");
    let src = dir.join("Idle.java");
    std::fs::write(
        &src,
        "public class Idle { public static void main(String[] a) throws Exception { \
         Thread.sleep(60000); } }",
    )
    .unwrap();
    let jvm = start(
        Command::new(&java)
            .arg("-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:0")
            .arg(&src),
    );
    let pid = jvm.0.id();
    agent.wait_for("the JVM's exec", WAIT, |r| {
        r["kind"] == "exec"
            && r["actor"]["pid"] == pid
            && alerted(r, "debug-interface-on-every-address")
    });
    let port = agent.wait_for("the JDWP port", WAIT, |r| {
        r["kind"] == "debug_port" && r["actor"]["pid"] == pid
    });
    assert_eq!(port["detail"]["interface"], "jdwp", "{port}");
    let bind = port["detail"]["bind"].as_str().unwrap();
    assert!(bind == "0.0.0.0" || bind == "::", "{port}");
    assert_eq!(port["detail"]["risk"], "any_address", "{port}");
    assert!(alerted(&port, "debug-interface-on-every-address"), "{port}");
    // jcmd attaches through the JVM's attach listener, woken by SIGQUIT.
    let out = Command::new(&jcmd)
        .args([&pid.to_string(), "VM.version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "jcmd: {:?}", out);
    let sig = agent.wait_for("jcmd's signal", WAIT, |r| {
        r["kind"] == "debug_signal" && r["target"]["pid"] == pid
    });
    assert_eq!(sig["detail"]["interface"], "jvm_attach", "{sig}");
    assert_eq!(sig["detail"]["signal"], libc::SIGQUIT, "{sig}");
    assert!(alerted(&sig, "runtime-debug-signal"), "{sig}");
    drop(jvm);
    agent.stop().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn node_inspector_at_launch_and_by_sigusr1() {
    let Some(node) = tool("node").or_else(|| tool("nodejs")) else {
        panic!("Node is not installed (cargo xtask test installs nodejs)");
    };
    let dir = std::env::temp_dir().join(nonce("node"));
    let agent = agent(&dir, "rules: []\n");
    let idle = "setTimeout(() => {}, 60000)";
    let a = start(Command::new(&node).args(["--inspect=0.0.0.0:0", "-e", idle]));
    let port = agent.wait_for("the inspector's port", WAIT, |r| {
        r["kind"] == "debug_port" && r["actor"]["pid"] == a.0.id()
    });
    assert_eq!(port["detail"]["interface"], "node_inspector", "{port}");
    assert_eq!(port["detail"]["risk"], "any_address", "{port}");
    // A Node started plainly, its inspector switched on from outside.
    let mut b = start(Command::new(&node).args(["-e", idle]));
    let pid = b.0.id();
    agent.wait_for("the second node's exec", WAIT, |r| {
        r["kind"] == "exec" && r["actor"]["pid"] == pid
    });
    // Node installs its SIGUSR1 handler during start-up: wait for it.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling a child this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGUSR1) }, 0);
    let sig = agent.wait_for("the SIGUSR1", WAIT, |r| {
        r["kind"] == "debug_signal" && r["target"]["pid"] == pid
    });
    assert_eq!(sig["detail"]["interface"], "node_inspector", "{sig}");
    assert!(alerted(&sig, "runtime-debug-signal"), "{sig}");
    // The inspector then listens on its default port, 9229.
    let mut err = String::new();
    let mut lines = BufReader::new(b.0.stderr.take().unwrap());
    lines.read_line(&mut err).unwrap();
    assert!(err.contains("Debugger listening"), "{err}");
    let port = agent.wait_for("the inspector it opened", WAIT, |r| {
        r["kind"] == "debug_port" && r["actor"]["pid"] == pid
    });
    assert_eq!(port["detail"]["interface"], "node_inspector", "{port}");
    drop((a, b));
    agent.stop().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn library_injection_memory_files_and_core_dumps() {
    let dir = std::env::temp_dir().join(nonce("inject"));
    let agent = agent(
        &dir,
        "rules:\n  - name: core-dump-test\n    title: Test process dumped core\n    \
         on: [core_dump]\n    target: { comm: [dmdump] }\n    action: alert\n    \
         severity: high\n    tags: [attack.t1003]\n",
    );
    // LD_PRELOAD from a directory anyone may write (the library need not
    // exist: the loader says so and goes on).
    let lib = std::env::temp_dir().join(format!("{}.so", nonce("lib")));
    let out = Command::new("/bin/true")
        .arg(nonce("preload"))
        .env("LD_PRELOAD", &lib)
        .output()
        .unwrap();
    assert!(out.status.success());
    let exec = agent.wait_for("the preloaded exec", WAIT, |r| {
        r["kind"] == "exec" && r["detail"]["env"]["LD_PRELOAD"] == lib.to_str().unwrap()
    });
    assert!(
        alerted(&exec, "library-preload-from-a-writable-directory"),
        "{exec}"
    );
    // /etc/ld.so.preload opened for writing (nothing written; an empty file
    // this test made is removed again).
    let preload = Path::new("/etc/ld.so.preload");
    let existed = preload.exists();
    drop(
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(preload)
            .unwrap(),
    );
    if !existed {
        std::fs::remove_file(preload).unwrap();
    }
    let rec = agent.wait_for("the ld.so.preload write", WAIT, |r| {
        r["kind"] == "injection" && r["actor"]["pid"] == std::process::id()
    });
    assert!(alerted(&rec, "system-wide-preload-written"), "{rec}");
    // Another process's mapped file and its memfd, through /proc.
    // It holds its memfd until its stdin (ours) closes.
    let mut holder = Proc(
        Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import os,mmap,sys; fd=os.memfd_create('dm'); os.write(fd,b'x'*4096); \
                 m=mmap.mmap(fd,4096); print(fd, flush=True); sys.stdin.read()",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(holder.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fd: u32 = line.trim().parse().unwrap();
    let hpid = holder.0.id();
    std::fs::read(format!("/proc/{hpid}/fd/{fd}")).unwrap();
    let rec = agent.wait_for("the memfd open", WAIT, |r| {
        r["detail"]["via"] == "proc_fd_memfd" && r["actor"]["pid"] == std::process::id()
    });
    assert_eq!(rec["target"]["pid"], hpid, "{rec}");
    assert!(
        alerted(&rec, "another-process-mapped-or-anonymous-memory"),
        "{rec}"
    );
    let maps = std::fs::read_to_string(format!("/proc/{hpid}/maps")).unwrap();
    let range = maps
        .lines()
        .find(|l| l.contains("memfd:dm"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    std::fs::read(format!("/proc/{hpid}/map_files/{range}")).unwrap();
    let rec = agent.wait_for("the map_files open", WAIT, |r| {
        r["detail"]["via"] == "map_files" && r["actor"]["pid"] == std::process::id()
    });
    assert!(
        alerted(&rec, "another-process-mapped-or-anonymous-memory"),
        "{rec}"
    );
    drop(holder);
    // A core dump of a process the policy protects.
    let work = dir.join("cores");
    std::fs::create_dir_all(&work).unwrap();
    let dump = work.join("dmdump");
    std::fs::copy("/bin/sleep", &dump).unwrap();
    std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg("ulimit -c unlimited; ./dmdump 30 & P=$!; sleep 0.3; kill -SEGV $P; wait $P")
        .current_dir(&work)
        .status()
        .unwrap();
    assert!(!status.success());
    let rec = agent.wait_for("the core dump", WAIT, |r| {
        r["kind"] == "core_dump" && r["actor"]["comm"] == "dmdump"
    });
    assert_eq!(rec["detail"]["signal"], libc::SIGSEGV, "{rec}");
    assert!(rec["detail"]["core_pattern"].is_string(), "{rec}");
    assert!(alerted(&rec, "core-dump-test"), "{rec}");
    // The kernel's memory, where this kernel has /proc/kcore.
    if std::fs::File::open("/proc/kcore").is_ok() {
        let rec = agent.wait_for("the kcore open", WAIT, |r| {
            r["detail"]["via"] == "kcore" && r["actor"]["pid"] == std::process::id()
        });
        assert!(alerted(&rec, "kernel-memory-read"), "{rec}");
    } else {
        eprintln!("interfaces: no /proc/kcore on this kernel: its record is not checked here");
    }
    agent.stop().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}
