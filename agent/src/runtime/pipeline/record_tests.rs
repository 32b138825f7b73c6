//! Records of real events through every stage: the exec record's fields and
//! escaping, each access vector's kind and detail, the verdicts the kernel
//! made and those policy made, and a target the agent does not know.

use std::{path::Path, sync::Arc};

use agent_common::{AccessKind, Creds, Enforcement, NsIds, flags};
use serde_json::Value;

use super::*;
use crate::{
    ebpf::enforce::Mechanism,
    event::{Event, encode},
    process::ProcessEntry,
    sys::host::Host,
};

fn table() -> ProcessTable {
    let mut t = ProcessTable::new(100, 1, 1);
    for (pid, ppid, comm) in [
        (1, 0, "init"),
        (20, 1, "sshd"),
        (30, 20, "bash"),
        (40, 30, "echo"),
    ] {
        let mut e = ProcessEntry::new(pid, 1, ppid);
        e.comm = comm.as_bytes().into();
        e.exe = format!("/usr/bin/{comm}").as_bytes().into();
        e.creds.uid = 70;
        t.insert(e);
    }
    t
}

fn pipeline() -> Pipeline {
    let enricher = Enricher::new(
        Path::new("/nonexistent-debugmon/etc"),
        Path::new("/nonexistent-debugmon/cgroup"),
        Path::new("/nonexistent-debugmon/proc"),
        8,
    );
    let host = Host {
        name: "h".into(),
        id: "m".into(),
        boot_id: "b".into(),
    };
    Pipeline::new(
        table(),
        enricher,
        RecordBuilder::new(host, Clock::with_offset(0)),
    )
}

fn exec(filename: &[u8], argv: Vec<Vec<u8>>, fl: u32) -> ExecInfo {
    ExecInfo {
        ktime_ns: 1,
        flags: fl,
        pid: 40,
        tgid: 40,
        start_ns: 1,
        ppid: 30,
        old_pid: 40,
        creds: Creds {
            uid: 1000,
            gid: 1000,
            euid: 0,
            egid: 0,
            auid: u32::MAX,
            sessionid: 3,
        },
        cgroup_id: 1,
        ns: NsIds::default(),
        comm: b"echo".to_vec(),
        tty: b"pts/1".to_vec(),
        filename: filename.to_vec(),
        argv,
        argv_truncated: fl & flags::ARGV_TRUNCATED != 0,
        argv_total_len: 10,
        exe_file: Default::default(),
        cwd: None,
    }
}

fn access(kind: AccessKind, target: u32, request: u64) -> AccessInfo {
    AccessInfo {
        ktime_ns: 5,
        flags: 0,
        pid: 30,
        tgid: 30,
        start_ns: 1,
        access: kind,
        target_pid: target,
        request,
        arg: 0,
        ret: Some(-1),
        count: 1,
        aggregate: false,
        io_uring: false,
        at_access: false,
        writes: false,
        refused: false,
        target_host_pid: None,
        ppid: 20,
        creds: Creds::default(),
        ns: NsIds::default(),
        cgroup_id: 0,
        comm: b"bash".to_vec(),
        name: b"myprog".to_vec(),
        enforcement: Enforcement::None,
        rule: None,
    }
}

/// The one record `ev` makes in `p`.
fn record(p: &mut Pipeline, ev: Event) -> Value {
    p.handle(&encode(&ev));
    let batch = p.take_batch();
    assert_eq!(batch.last(), Some(&b'\n'));
    serde_json::from_slice(&batch).unwrap()
}

#[test]
fn exec_record_has_the_design_fields() {
    let mut p = pipeline();
    let e = exec(b"/bin/echo", vec![b"/bin/echo".to_vec(), b"hi".to_vec()], 0);
    let v = record(&mut p, Event::Exec(e));
    assert_eq!(v["schema"], 1);
    assert_eq!(v["seq"], 1);
    assert_eq!(v["kind"], "exec");
    assert_eq!(v["host"]["boot_id"], "b");
    assert_eq!(v["actor"]["argv"][1], "hi");
    assert_eq!(v["actor"]["auid"], Value::Null, "unset auid is null");
    assert_eq!(v["actor"]["session_id"], 3);
    let anc: Vec<u64> = v["actor"]["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(anc, vec![30, 20, 1]);
    assert!(v["detail"].get("escaped").is_none());
}

#[test]
fn non_utf8_fields_are_escaped_and_listed() {
    let mut p = pipeline();
    let e = exec(b"/tmp/\xff", vec![b"x\xfe".to_vec()], flags::ARGV_TRUNCATED);
    let v = record(&mut p, Event::Exec(e));
    assert_eq!(v["actor"]["exe"], "/tmp/\\xff");
    assert_eq!(v["actor"]["argv"][0], "x\\xfe");
    assert_eq!(v["detail"]["escaped"], serde_json::json!(["exe", "argv"]));
    assert_eq!(v["detail"]["argv_truncated"], true);
}

#[test]
fn ptrace_record_names_the_request_target_and_result() {
    let mut p = pipeline();
    let v = record(&mut p, Event::Access(access(AccessKind::Ptrace, 40, 16)));
    assert_eq!(v["kind"], "ptrace");
    assert_eq!(v["detail"]["ptrace_request"], "PTRACE_ATTACH");
    assert_eq!(v["detail"]["result"], "EPERM");
    assert_eq!(v["actor"]["pid"], 30);
    assert_eq!(
        v["actor"]["exe"], "/usr/bin/bash",
        "actor exe from the table"
    );
    assert_eq!(v["target"]["pid"], 40);
    assert_eq!(v["target"]["comm"], "echo");
    assert_eq!(v["target"]["uid"], 70);
    assert_eq!(v["target"]["known"], true);
}

#[test]
fn mem_access_kinds_tell_read_from_write() {
    let cases = [
        (AccessKind::VmReadv, 0, "process_vm_readv", "read"),
        (AccessKind::VmWritev, 0, "process_vm_writev", "write"),
        (AccessKind::ProcMem, 0, "proc_mem", "read"),
        (AccessKind::ProcMem, 2, "proc_mem", "write"),
        (AccessKind::ProcEnviron, 0, "proc_environ", "read"),
        (AccessKind::PidfdGetfd, 0, "pidfd_getfd", "fd"),
    ];
    for (kind, req, via, rw) in cases {
        // A pipeline each: repeated opens by one process are folded.
        let mut p = pipeline();
        let v = record(&mut p, Event::Access(access(kind, 40, req)));
        assert_eq!(v["kind"], "mem_access");
        assert_eq!(v["detail"]["via"], via);
        assert_eq!(v["detail"]["access"], rw, "{kind:?} {req}");
        assert!(v["detail"].get("io_uring").is_none(), "{v}");
    }
    // An open through io_uring says so.
    let a = AccessInfo {
        io_uring: true,
        at_access: false,
        writes: false,
        refused: false,
        ..access(AccessKind::ProcMem, 40, 0)
    };
    let v = record(&mut pipeline(), Event::Access(a));
    assert_eq!(v["detail"]["via"], "proc_mem");
    assert_eq!(v["detail"]["io_uring"], true);
}

#[test]
fn perf_and_bpf_records() {
    let mut p = pipeline();
    let v = record(&mut p, Event::Access(access(AccessKind::PerfOpen, 0, 0)));
    assert_eq!(v["kind"], "perf_attach");
    assert_eq!(v["detail"]["system_wide"], true);
    assert!(v.get("target").is_none());
    let v = record(
        &mut p,
        Event::Access(access(AccessKind::BpfProgLoad, 0, 29)),
    );
    assert_eq!(v["kind"], "bpf");
    assert_eq!(v["detail"]["prog_type"], "lsm");
    assert_eq!(v["detail"]["prog_name"], "myprog");
}

#[test]
fn kernel_denials_carry_the_rule_and_the_mechanism() {
    let mut p = pipeline();
    p.decider_mut()
        .set_kernel(vec![(0, "attach-to-database".into())], Mechanism::Off);
    let mut a = access(AccessKind::LsmAccess, 40, 2);
    a.enforcement = Enforcement::DeniedLsm;
    a.rule = Some(0);
    let v = record(&mut p, Event::Access(a));
    assert_eq!(v["decision"]["action"], "deny");
    assert_eq!(v["decision"]["enforced"], "lsm");
    assert_eq!(v["decision"]["rule"], "attach-to-database");
    assert_eq!(v["detail"]["lsm_hook"], "ptrace_access_check");
    let mut k = access(AccessKind::Ptrace, 40, 16);
    k.enforcement = Enforcement::Killed;
    k.rule = Some(u32::MAX);
    let v = record(&mut p, Event::Access(k));
    assert_eq!(v["decision"]["enforced"], "kill");
    assert_eq!(v["decision"]["rule"], "self-protection");
    let v = record(&mut p, Event::Access(access(AccessKind::Ptrace, 40, 16)));
    assert!(v.get("decision").is_none(), "observed only: no decision");
}

#[test]
fn a_deny_is_recorded_as_enforced_only_where_the_kernel_acted() {
    let set = PolicySet::from_texts(&[(
        "t.yaml",
        "rules:\n  - name: no-echo\n    title: reading echo\n    description: d\n    on: [mem_read]\n    target: { comm: [echo] }\n    action: deny\n    severity: high\n",
    )])
    .unwrap();
    let set = Arc::new(set);
    let rec = |a: AccessInfo, mechanism: Mechanism| {
        let mut p = pipeline();
        *p.decider_mut() = Decider::new(Arc::clone(&set), None);
        p.decider_mut()
            .set_kernel(vec![(0, "no-echo".to_owned())], mechanism);
        record(&mut p, Event::Access(a))
    };
    // BPF-LSM refused the mem open: the kernel wrote it on the event, with
    // the rule's slot, and the record carries that rule's severity.
    let refused = AccessInfo {
        enforcement: Enforcement::DeniedLsm,
        rule: Some(0),
        ret: Some(-13),
        ..access(AccessKind::ProcMem, 40, 0)
    };
    let v = rec(refused, Mechanism::Lsm);
    assert_eq!(v["decision"]["action"], "deny", "{v}");
    assert_eq!(v["decision"]["enforced"], "lsm", "{v}");
    assert_eq!(v["decision"]["severity"], "high", "{v}");
    assert_eq!(v["detail"]["lsm_hook"], "ptrace_access_check", "{v}");
    // Without the kernel's word on the event, nothing was enforced, under
    // either mechanism, whatever the rule says: an environ read (no
    // mechanism acts on a READ access), or a mem open the kernel let by.
    for (kind, mechanism) in [
        (AccessKind::ProcEnviron, Mechanism::Lsm),
        (AccessKind::ProcEnviron, Mechanism::Kill),
        (AccessKind::ProcMem, Mechanism::Kill),
        (AccessKind::ProcMem, Mechanism::Lsm),
    ] {
        let v = rec(access(kind, 40, 0), mechanism);
        assert_eq!(v["decision"]["action"], "deny", "{v}");
        assert!(v["decision"]["enforced"].is_null(), "{v}");
        let reason = v["decision"]["reason"].as_str().unwrap();
        assert!(reason.contains("not enforced"), "{reason}");
    }
}

#[test]
fn unknown_target_is_marked_not_invented() {
    let mut p = pipeline();
    let v = record(&mut p, Event::Access(access(AccessKind::Ptrace, 999, 16)));
    assert_eq!(v["target"]["pid"], 999);
    assert_eq!(v["target"]["known"], false);
    assert_eq!(v["target"]["comm"], Value::Null);
}

#[test]
fn a_target_the_kernel_did_not_find_is_not_taken_from_the_table() {
    let mut p = pipeline();
    // pid 40 is in the table (an exited process it still keeps, or an
    // earlier namespace's holder of the number); the kernel said ESRCH.
    let mut a = access(AccessKind::Ptrace, 40, 16);
    a.ret = Some(-i64::from(libc::ESRCH));
    let v = record(&mut p, Event::Access(a));
    assert_eq!(v["target"]["known"], false, "{v}");
    assert_eq!(v["target"]["comm"], Value::Null, "{v}");
    assert_eq!(v["detail"]["result"], "ESRCH");
    // The same attach that went through names the table's process.
    let v = record(&mut p, Event::Access(access(AccessKind::Ptrace, 40, 16)));
    assert_eq!(v["target"]["comm"], "echo", "{v}");
}

/// The delivery thread's fast path, over the member boundaries the
/// pipeline hands it, seals exactly what parsing each line seals; a record
/// whose argv the redactor would change, and a `lost` record, go the
/// parsing way, and a captured environment is redacted on either.
#[test]
fn built_records_seal_as_their_lines_do() {
    use crate::{
        record::{
            redact::Redactor,
            seal::{Sealer, Unsealed},
        },
        sink::delivery::{prepare_built, prepare_canonical, prepare_line},
    };
    let set = PolicySet::from_texts(&[(
        "t.yaml",
        "rules:\n  - name: no-echo\n    title: reading echo\n    description: d\n    on: [mem_read]\n    target: { comm: [echo] }\n    action: deny\n    severity: high\n",
    )])
    .unwrap();
    let mut p = pipeline();
    *p.decider_mut() = Decider::new(Arc::new(set), None);
    let redactor = Arc::new(Redactor::default());
    p.set_redactor(Arc::clone(&redactor));
    for (file, argv) in [
        (
            &b"/bin/echo"[..],
            vec![b"/bin/echo".to_vec(), b"hi".to_vec()],
        ),
        (
            b"/bin/e\xffcho",
            vec![b"e\xff\"\\".to_vec(), "é\u{1}".into()],
        ),
        (
            b"/usr/bin/mysql",
            vec![b"mysql".to_vec(), b"-phunter2".to_vec()],
        ),
    ] {
        p.handle(&encode(&Event::Exec(exec(file, argv, 0))));
    }
    // A denial (decision and target), a captured environment, a loss.
    p.handle(&encode(&Event::Access(access(AccessKind::ProcMem, 40, 0))));
    let env = serde_json::json!({"env": {"JAVA_TOOL_OPTIONS": "-Dpassword=hunter2"}});
    p.note(6, Kind::Exec, env);
    let lost = LostCounts {
        exec: 2,
        ..LostCounts::default()
    };
    p.report_lost(7, lost);
    let batch = p.take_records();
    let fast: Vec<bool> = (batch.records.iter())
        .map(|r| prepare_built(&redactor, &batch, r).is_some())
        .collect();
    assert_eq!(fast, [true, true, false, true, true, false]);

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("host.key");
    let mut a = Sealer::open(&dir.path().join("a"), &key).unwrap();
    let mut b = Sealer::open(&dir.path().join("b"), &key).unwrap();
    for r in &batch.records {
        let line = &batch.bytes[r.line.clone()];
        let parsed = || Unsealed::Map(prepare_line(&redactor, line).unwrap());
        let built = prepare_built(&redactor, &batch, r)
            .or_else(|| prepare_canonical(&redactor, line))
            .unwrap_or_else(parsed);
        let (f, s) = (
            a.seal_group(vec![built], true).unwrap().remove(0),
            b.seal_group(vec![parsed()], true).unwrap().remove(0),
        );
        let text = String::from_utf8_lossy(&f.line).into_owned();
        assert_eq!(text, String::from_utf8_lossy(&s.line));
        assert_eq!((&f.kind, &f.severity), (&s.kind, &s.severity));
        assert!(!text.contains("hunter2"), "{text}");
    }
}
