//! The records of a fixed run, byte for byte: one of every event kind the
//! kernel sends (each access vector, each kernel decision), the decisions
//! of a policy with alert, deny, allow, role and grant, aggregates, lost
//! counts and the policy, grant and agent records, through the whole
//! hot path (decode, process table, enrichment, decision, record). The
//! output is compared with `agent/tests/fixtures/golden/records.jsonl`:
//! a change in what the agent writes shows here first. When a change is
//! meant, run the test with `DEBUGMON_BLESS=1` and review the diff.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use agent_common::{AccessKind, AggKey, Creds, Enforcement, NsIds, flags};
use chrono::{TimeZone as _, Utc};
use serde_json::json;

use super::{Pipeline, Protector};
use crate::{
    decide::Decider,
    ebpf::enforce::{EnforceError, Mechanism},
    enrich::Enricher,
    event::{AccessInfo, Event, ExecInfo, ExitInfo, ForkInfo, Kind, encode},
    grants::{GrantStore, ManualClock},
    policy::{PolicySet, kernel::KernelPolicy},
    process::{ProcessEntry, ProcessTable},
    record::{LostCounts, RecordBuilder},
    sys::host::{Clock, Host},
};

const POLICY: &str = r#"
roles:
  oncall: { users: [alice] }
debuggers:
  gdb: { exe: ["*/gdb"], comm: [gdb] }
  strace: { exe: ["*/strace"] }
rules:
  - name: protect-db
    title: Debugging the database
    on: [ptrace_attach, mem_access, pidfd_getfd]
    target: { comm: [postgres] }
    unless: { role: [oncall], grant: true }
    action: deny
    severity: critical
    tags: [attack.t1055.008]
  - name: debugger-started
    on: [debugger_exec]
    action: alert
    severity: low
  - name: perf-anywhere
    on: [perf_attach]
    action: alert
    severity: medium
  - name: no-bpf
    on: [bpf_load]
    action: deny
    severity: high
  - name: shell-env-ok
    on: [mem_read]
    target: { comm: [bash] }
    action: allow
"#;

/// Kernel maps the golden run does not need (kernel decisions come with
/// the events).
struct NoKernel;

impl Protector for NoKernel {
    fn install(&mut self, p: &KernelPolicy) -> Result<Vec<(u32, String)>, EnforceError> {
        Ok(p.rules
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32, r.name.clone()))
            .collect())
    }
    fn set_grants(&mut self, _: &[(agent_common::GrantKey, u64)]) -> Result<(), EnforceError> {
        Ok(())
    }
    fn mechanism(&self) -> Mechanism {
        Mechanism::Kill
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn creds(uid: u32, auid: u32) -> Creds {
    Creds {
        uid,
        gid: uid,
        euid: uid,
        egid: uid,
        auid,
        sessionid: if auid == u32::MAX { u32::MAX } else { 7 },
    }
}

fn host_ns(pid: u32) -> NsIds {
    NsIds {
        pid_ns: 0,
        user_ns: 4_026_531_837,
        mnt_ns: 4_026_531_841,
        ns_pid: pid,
    }
}

fn entry(pid: u32, ppid: u32, comm: &str, exe: &str, uid: u32) -> ProcessEntry {
    let mut e = ProcessEntry::new(pid, u64::from(pid) * 1000, ppid);
    e.comm = comm.as_bytes().into();
    e.exe = exe.as_bytes().into();
    e.argv = vec![exe.as_bytes().to_vec()].into();
    e.creds = creds(uid, u32::MAX);
    e.ns = host_ns(pid);
    e
}

fn table() -> ProcessTable {
    let mut t = ProcessTable::new(1000, 1_000_000_000, 1);
    t.insert(entry(1, 0, "systemd", "/usr/lib/systemd/systemd", 0));
    t.insert(entry(20, 1, "sshd", "/usr/sbin/sshd", 0));
    let mut bash = entry(30, 20, "bash", "/usr/bin/bash", 1000);
    bash.creds = creds(1000, 1000);
    bash.tty = b"pts/1".as_slice().into();
    t.insert(bash);
    t.insert(entry(
        50,
        1,
        "postgres",
        "/usr/lib/postgresql/15/bin/postgres",
        105,
    ));
    t
}

fn exec(pid: u32, ppid: u32, uid: u32, path: &[u8], argv: &[&[u8]], fl: u32) -> Event {
    Event::Exec(ExecInfo {
        ktime_ns: 1_000_000 + u64::from(pid),
        flags: fl,
        pid,
        tgid: pid,
        start_ns: u64::from(pid) * 1000,
        ppid,
        old_pid: pid,
        creds: creds(uid, 1000),
        cgroup_id: 0,
        ns: host_ns(pid),
        comm: path.rsplit(|&b| b == b'/').next().unwrap().to_vec(),
        tty: b"pts/1".to_vec(),
        filename: path.to_vec(),
        argv: argv.iter().map(|a| a.to_vec()).collect(),
        argv_truncated: fl & flags::ARGV_TRUNCATED != 0,
        argv_total_len: argv.iter().map(|a| a.len() as u32 + 1).sum(),
        exe_file: Default::default(),
        cwd: Some(b"/home/alice".to_vec()),
    })
}

fn fork(pid: u32, parent: u32, uid: u32) -> Event {
    Event::Fork(ForkInfo {
        ktime_ns: 900_000 + u64::from(pid),
        flags: 0,
        pid,
        start_ns: u64::from(pid) * 1000,
        parent_tgid: parent,
        parent_start_ns: u64::from(parent) * 1000,
        creds: creds(uid, 1000),
        cgroup_id: 0,
        ns: host_ns(pid),
        comm: b"bash".to_vec(),
    })
}

fn access(actor: u32, uid: u32, kind: AccessKind, target: u32, request: u64) -> AccessInfo {
    AccessInfo {
        ktime_ns: 2_000_000 + u64::from(actor) * 10 + kind as u64,
        flags: 0,
        pid: actor,
        tgid: actor,
        start_ns: u64::from(actor) * 1000,
        access: kind,
        target_pid: target,
        request,
        arg: 0,
        ret: None,
        count: 1,
        aggregate: false,
        io_uring: false,
        at_access: false,
        writes: false,
        refused: false,
        target_host_pid: None,
        ppid: 30,
        creds: creds(uid, uid),
        ns: host_ns(actor),
        cgroup_id: 0,
        comm: b"gdb".to_vec(),
        name: Vec::new(),
        enforcement: Enforcement::None,
        rule: None,
    }
}

/// Every access the kernel reports, as the actor `gdb` (pid 60, uid 1001)
/// and, where a grant or role should change the outcome, alice (uid 1000).
fn accesses() -> Vec<AccessInfo> {
    use AccessKind as K;
    let gdb = |kind, target, request| access(60, 1001, kind, target, request);
    let mut out = vec![
        // Attach to the database: killed by the fallback, rule slot 0.
        AccessInfo {
            enforcement: Enforcement::Killed,
            rule: Some(0),
            ..gdb(K::Ptrace, 50, 16)
        },
        // The same refused by BPF-LSM.
        AccessInfo {
            enforcement: Enforcement::DeniedLsm,
            rule: Some(0),
            ..gdb(K::LsmAccess, 50, 2)
        },
        // Policy decides (deny, not enforced here) a read of its memory.
        gdb(K::VmReadv, 50, 0),
        AccessInfo {
            ret: Some(-13),
            ..gdb(K::VmWritev, 30, 0)
        },
        // /proc/50/mem opened for writing through io_uring.
        AccessInfo {
            io_uring: true,
            at_access: false,
            writes: false,
            refused: false,
            ret: Some(3),
            ..gdb(K::ProcMem, 50, 2)
        },
        // The shell's environment: allowed by rule.
        gdb(K::ProcEnviron, 30, 0),
        AccessInfo {
            arg: 7,
            ..gdb(K::PidfdGetfd, 50, 0)
        },
        AccessInfo {
            arg: u64::from(u32::MAX),
            ..gdb(K::PerfOpen, 30, 0)
        },
        AccessInfo {
            arg: 1,
            ..gdb(K::PerfOpen, 0, 1)
        },
        AccessInfo {
            name: b"probe\xff".to_vec(),
            ..gdb(K::BpfProgLoad, 0, 2)
        },
        AccessInfo {
            enforcement: Enforcement::DeniedLsm,
            ..gdb(K::LsmTraceme, 0, 0)
        },
        AccessInfo {
            enforcement: Enforcement::DeniedLsm,
            rule: Some(1),
            ..gdb(K::LsmExec, 0, 0)
        },
        AccessInfo {
            enforcement: Enforcement::DeniedLsm,
            rule: Some(u32::MAX),
            ..gdb(K::LsmKill, 99, 19)
        },
        AccessInfo {
            enforcement: Enforcement::DeniedLsm,
            ..gdb(K::LsmPerf, 0, 4)
        },
        AccessInfo {
            enforcement: Enforcement::DeniedLsm,
            ..gdb(K::LsmBpf, 0, 5)
        },
        // Named in another pid namespace: resolved through the table.
        AccessInfo {
            ns: NsIds {
                pid_ns: 4_026_532_000,
                ns_pid: 3,
                ..host_ns(60)
            },
            ..gdb(K::Ptrace, 1, 16)
        },
        // A pid the agent does not know.
        gdb(K::Ptrace, 4_000_000, 16),
        // Itself: no record.
        gdb(K::PerfOpen, 60, 0),
    ];
    // alice: exempt by role from the database rule; strace as bob with a grant.
    out.push(access(61, 1000, K::Ptrace, 50, 16));
    out.push(access(62, 1002, K::Ptrace, 50, 0x4206));
    out
}

fn pipeline(etc: &Path, grants: &Path, signer: Arc<dyn crate::grants::GrantSigner>) -> Pipeline {
    let enricher = Enricher::new(
        etc,
        Path::new("/nonexistent-debugmon/cgroup"),
        Path::new("/nonexistent-debugmon/proc"),
        8,
    );
    let host = Host {
        name: "golden".into(),
        id: "0123456789abcdef".into(),
        boot_id: "b00t".into(),
    };
    // 2026-01-02T03:04:05Z at boot time 0.
    let clock = Clock::with_offset(1_767_323_045_000_000_000);
    let mut p = Pipeline::new(table(), enricher, RecordBuilder::new(host, clock));
    let set = Arc::new(PolicySet::from_texts(&[("golden.yaml", POLICY)]).expect("valid policy"));
    let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap();
    let (store, expired) = GrantStore::open(
        grants,
        std::time::Duration::from_secs(4 * 3600),
        Arc::new(ManualClock::new(now)),
        signer,
    )
    .expect("grants fixture");
    assert!(expired.is_empty());
    let mut decider = Decider::new(Arc::clone(&set), Some(Arc::new(Mutex::new(store))));
    decider.set_kernel(
        vec![(0, "protect-db".to_owned()), (1, "no-bpf".to_owned())],
        Mechanism::Kill,
    );
    *p.decider_mut() = decider;
    p.set_protector(Box::new(NoKernel));
    p
}

fn run() -> Vec<u8> {
    let dir = fixtures();
    // The store may rewrite its file: it works on a copy.
    let tmp = tempfile::tempdir().unwrap();
    let grants = tmp.path().join("grants.json");
    // The fixture lists the grants; sealed here with a test key, as the
    // agent would have written them.
    let text = std::fs::read_to_string(dir.join("grants.json")).unwrap();
    let listed: crate::grants::seal::SealedFile = serde_json::from_str(&text).unwrap();
    let signer = Arc::new(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let sealed = crate::grants::seal::seal(listed.grants, &*signer);
    std::fs::write(&grants, serde_json::to_vec(&sealed).unwrap()).unwrap();
    let mut p = pipeline(&dir.join("etc"), &grants, signer);
    let events = [
        fork(70, 30, 1000),
        exec(70, 30, 1000, b"/usr/bin/gdb", &[b"gdb", b"-p", b"50"], 0),
        fork(71, 30, 1000),
        exec(
            71,
            30,
            1000,
            b"/usr/bin/st\xffrace",
            &[b"strace", b"--password", b"hunter2", b"-p\xfe"],
            flags::ARGV_TRUNCATED | flags::NO_AUDIT_IDS,
        ),
        fork(72, 71, 1000),
        Event::Exit(ExitInfo {
            ktime_ns: 3_000_000,
            pid: 71,
            start_ns: 71_000,
            exit_code: 0,
        }),
        exec(72, 71, 1000, b"/bin/true", &[b"true"], 0),
        fork(60, 30, 1001),
        fork(61, 30, 1000),
        fork(62, 30, 1002),
    ];
    for e in &events {
        p.handle(&encode(e));
    }
    for a in accesses() {
        p.handle(&encode(&Event::Access(a)));
    }
    p.handle(b"\x01\x02garbage");
    let key = AggKey {
        actor_tgid: 60,
        target_pid: 50,
        access: AccessKind::Ptrace as u32,
        outcome: 0,
        request: 2,
    };
    p.report_aggregates(5_000_000, 5, [(key, 41)]);
    p.report_lost(
        6_000_000,
        LostCounts {
            exec: 3,
            access: 1,
            spool_shed: 2,
            ..LostCounts::default()
        },
    );
    p.note(
        7_000_000,
        Kind::Policy,
        json!({"event": "loaded", "hash": "h", "rules": 5}),
    );
    for g in p.take_grant_uses() {
        p.note(8_000_000, Kind::Grant, json!({"event": "used", "grant": g}));
    }
    let events = p.stats().events;
    p.note(
        9_000_000,
        Kind::Agent,
        json!({"event": "stopped", "events": events}),
    );
    p.take_batch()
}

#[test]
fn records_of_a_fixed_run_are_byte_identical_to_the_golden_file() {
    let got = run();
    let file = fixtures().join("records.jsonl");
    if std::env::var_os("DEBUGMON_BLESS").is_some() {
        std::fs::write(&file, &got).unwrap();
    }
    let want = std::fs::read(&file).unwrap();
    if got != want {
        let got = String::from_utf8_lossy(&got);
        let want = String::from_utf8_lossy(&want);
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "record {} differs", i + 1);
        }
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "number of records differs"
        );
    }
    // Every kind of record the run is meant to hold is there.
    let kinds: std::collections::BTreeSet<String> = String::from_utf8_lossy(&want)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    for k in [
        "exec",
        "ptrace",
        "mem_access",
        "perf_attach",
        "bpf",
        "agent",
        "lost",
        "policy",
        "grant",
    ] {
        assert!(
            kinds.contains(&format!("\"{k}\"")),
            "{k} missing: {kinds:?}"
        );
    }
}
