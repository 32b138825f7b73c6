//! The inventory collected from a fixture tree shaped like /proc, /sys and
//! program directories: traced processes and their tracers, a debug port
//! on every address found through its socket inode, switches from argv
//! and environment, `/etc/ld.so.preload`, debuggers on disk, and what it
//! skips.

use std::{os::unix::fs::PermissionsExt as _, path::Path};

use super::*;

fn write(root: &Path, path: &str, bytes: &[u8]) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn link(root: &Path, path: &str, to: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(to, p).unwrap();
}

/// One network namespace's sockets, as each of its processes shows them:
/// debugpy's port on every address and 8080 on loopback.
const TCP: &[u8] = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:162E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40112 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40113 1 0 100 0 0 10 0\n";

/// The status of thread `tid` of process `tgid`.
fn thread(root: &Path, tid: u32, tgid: u32, name: &str, tracer: u32) {
    write(
        root,
        &format!("proc/{tid}/status"),
        format!("Name:\t{name}\nTgid:\t{tgid}\nTracerPid:\t{tracer}\nUid:\t0\t0\t0\t0\n")
            .as_bytes(),
    );
}

/// A process directory under `proc/`.
fn process(root: &Path, pid: u32, name: &str, exe: &str, tracer: u32, cmdline: &[u8], env: &[u8]) {
    thread(root, pid, pid, name, tracer);
    write(root, &format!("proc/{pid}/cmdline"), cmdline);
    write(root, &format!("proc/{pid}/environ"), env);
    link(root, &format!("proc/{pid}/exe"), exe);
    link(root, &format!("proc/{pid}/ns/net"), "net:[4026531840]");
    // The first process exits before its sockets are read: the next one
    // of the namespace is asked.
    if pid != 10 {
        write(root, &format!("proc/{pid}/net/tcp"), TCP);
    }
    std::fs::create_dir_all(root.join(format!("proc/{pid}/fd"))).unwrap();
}

fn policy() -> PolicySet {
    PolicySet::from_texts(&[(
        "d.yaml",
        "debuggers:\n  gdb: {exe: [gdb]}\n  strace: {exe: [strace]}\nrules: []\n",
    )])
    .unwrap()
}

#[test]
fn a_fixture_host() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    // 10: traced by 11, a program that is no debugger; 12: traced by gdb.
    process(root, 10, "victim", "/srv/victim", 11, b"victim\0", b"");
    process(
        root,
        11,
        "helper",
        "/tmp/helper",
        0,
        b"helper\0-p\x0010\0",
        b"",
    );
    process(root, 12, "app", "/srv/app", 13, b"app\0", b"");
    process(root, 13, "gdb", "/usr/bin/gdb", 0, b"gdb\0-p\x0012\0", b"");
    // 20: python listening on debugpy's port on every address and on
    // 8080 (no debug interface) on loopback.
    process(
        root,
        20,
        "python3",
        "/usr/bin/python3",
        0,
        b"python3\0srv.py\0",
        b"",
    );
    link(root, "proc/20/fd/3", "socket:[40112]");
    link(root, "proc/20/fd/4", "socket:[40113]");
    // 30: started with LD_PRELOAD.
    process(
        root,
        30,
        "sleep",
        "/usr/bin/sleep",
        0,
        b"sleep\x00100\0",
        b"PATH=/bin\0LD_PRELOAD=/usr/lib/libx.so\0",
    );
    // 50: traced by thread 71 of process 70 (TracerPid names a thread).
    process(root, 50, "svc", "/srv/svc", 71, b"svc\0", b"");
    process(root, 70, "injector", "/opt/injector", 0, b"injector\0", b"");
    thread(root, 71, 70, "worker-3", 0);
    // 40: a directory without status (exited while read).
    std::fs::create_dir_all(root.join("proc/40")).unwrap();
    write(
        root,
        "etc/ld.so.preload",
        b"# injected\n/usr/lib/libhook.so\n",
    );
    write(root, "proc/sys/kernel/yama/ptrace_scope", b"1\n");
    write(root, "bin/gdb", b"");
    write(root, "bin/ls", b"");
    for f in ["bin/gdb", "bin/ls"] {
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    write(root, "bin/strace", b"");
    let src = Sources {
        proc_root: root.join("proc"),
        security: root.join("sec"),
        ld_so_preload: root.join("etc/ld.so.preload"),
        program_dirs: vec![root.join("bin"), root.join("bin"), root.join("nonexistent")],
    };
    let inv = collect(&src, &policy());
    // 40 without a status, 10 without its namespace's sockets.
    assert_eq!(inv.skipped, 2, "{inv:#?}");
    assert_eq!(inv.traced.len(), 3, "{inv:#?}");
    assert_eq!(
        (inv.traced[2].process.pid, inv.traced[2].tracer.pid),
        (50, 70),
        "the tracing thread's process"
    );
    assert_eq!(inv.traced[2].tracer.comm, "injector");
    assert_eq!(inv.traced[0].process.pid, 10);
    assert_eq!(inv.traced[0].tracer.pid, 11);
    assert_eq!(inv.traced[0].tracer.exe, "/tmp/helper");
    assert_eq!(inv.traced[0].debugger, None);
    assert_eq!(inv.traced[1].debugger.as_deref(), Some("gdb"));
    assert_eq!(inv.debug_ports.len(), 1, "{inv:#?}");
    let p = &inv.debug_ports[0];
    assert_eq!((p.process.pid, p.port, p.interface), (20, 5678, "debugpy"));
    assert_eq!((p.bind.as_str(), p.risk), ("0.0.0.0", Some("any_address")));
    assert_eq!(inv.switches.len(), 1);
    assert_eq!(inv.switches[0].process.pid, 30);
    assert_eq!(inv.switches[0].findings, ["debug_switch:ld_preload"]);
    assert_eq!(inv.traced[0].findings, ["traced", "traced:non_debugger"]);
    assert_eq!(inv.traced[1].findings, ["traced"]);
    assert_eq!(
        p.findings,
        ["debug_port", "debug_port:debugpy", "debug_port:any_address"]
    );
    assert_eq!(
        inv.findings,
        ["ld_so_preload", "lockdown:none", "bpf_lsm:unavailable"],
        "the host's own findings; the processes' are on their entries"
    );
    assert_eq!(
        inv.ld_so_preload.as_ref().unwrap().libraries,
        ["/usr/lib/libhook.so"]
    );
    // Only the executable file, once though its directory is listed twice.
    assert_eq!(inv.debuggers.len(), 1, "{:?}", inv.debuggers);
    assert_eq!(inv.debuggers[0].class, "gdb");
    for f in [
        "debug_port",
        "debug_port:any_address",
        "debug_port:debugpy",
        "debug_switch:ld_preload",
        "ld_so_preload",
        "traced",
        "traced:non_debugger",
        "lockdown:none",
    ] {
        assert!(
            inv.all_findings().iter().any(|x| x == f),
            "{f} missing: {inv:?}"
        );
    }
    assert!(
        !inv.all_findings()
            .iter()
            .any(|x| x == "ptrace_scope:classic")
    );
    let table = render::table(&inv);
    assert!(
        table.contains("traced by 11 helper (/tmp/helper, uid 0) [NOT A KNOWN DEBUGGER]"),
        "{table}"
    );
    assert!(
        table.contains("debugpy          0.0.0.0:5678 [any_address]"),
        "{table}"
    );
    assert!(table.contains("skipped: 2"), "{table}");
}

#[test]
fn an_empty_tree_is_an_empty_inventory_with_its_skips() {
    let d = tempfile::tempdir().unwrap();
    let src = Sources {
        proc_root: d.path().join("no-proc"),
        security: d.path().join("no-sec"),
        ld_so_preload: d.path().join("no-preload"),
        program_dirs: vec![],
    };
    let inv = collect(&src, &policy());
    assert!(inv.traced.is_empty() && inv.debug_ports.is_empty() && inv.ld_so_preload.is_none());
    assert_eq!(inv.skipped, 1, "the unreadable /proc is counted");
}

#[test]
fn preload_file_syntax() {
    assert_eq!(
        parse_preload("/a.so /b.so:/c.so # not/this.so\n\n#/d.so\n"),
        ["/a.so", "/b.so", "/c.so"]
    );
    assert!(parse_preload("# nothing\n").is_empty());
}
