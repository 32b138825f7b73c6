//! The pipeline as a whole: the table kept exact by fork, exec and exit,
//! metrics by kind, aggregates, accesses to oneself, and every way an event
//! is lost being counted and reported.

use agent_common::{Creds, NsIds};
use serde_json::Value;

use super::*;
use crate::{
    event::{ExecInfo, ExitInfo, ForkInfo, encode},
    process::ProcessEntry,
    sys::host::Host,
};

fn pipeline() -> Pipeline {
    let mut table = ProcessTable::new(1000, 1_000, 1);
    let mut init = ProcessEntry::new(1, 0, 0);
    init.comm = b"init".as_slice().into();
    init.exe = b"/sbin/init".as_slice().into();
    table.insert(init);
    let host = Host {
        name: "h".into(),
        id: "i".into(),
        boot_id: "b".into(),
    };
    let enricher = crate::enrich::Enricher::new(
        std::path::Path::new("/nonexistent-debugmon/etc"),
        std::path::Path::new("/nonexistent-debugmon/cgroup"),
        std::path::Path::new("/nonexistent-debugmon/proc"),
        16,
    );
    Pipeline::new(table, enricher, RecordBuilder::new(host, Clock::sample()))
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn fork(pid: u32, parent: u32) -> Vec<u8> {
    encode(&Event::Fork(ForkInfo {
        ktime_ns: 10,
        flags: 0,
        pid,
        start_ns: u64::from(pid),
        parent_tgid: parent,
        parent_start_ns: 0,
        creds: Creds::default(),
        cgroup_id: 0,
        ns: NsIds::default(),
        comm: b"sh".to_vec(),
    }))
}

fn exec(pid: u32, ppid: u32, path: &str) -> Vec<u8> {
    encode(&Event::Exec(ExecInfo {
        ktime_ns: 20,
        flags: 0,
        pid,
        tgid: pid,
        start_ns: u64::from(pid),
        ppid,
        old_pid: pid,
        creds: Creds::default(),
        cgroup_id: 0,
        ns: NsIds::default(),
        comm: path.rsplit('/').next().unwrap().as_bytes().to_vec(),
        tty: Vec::new(),
        filename: path.as_bytes().to_vec(),
        argv: vec![path.as_bytes().to_vec()],
        argv_truncated: false,
        argv_total_len: 0,
        exe_file: Default::default(),
        cwd: None,
    }))
}

#[test]
fn fork_exec_exit_sequence_builds_ancestry_and_cleans_up() {
    let mut p = pipeline();
    p.handle(&fork(100, 1));
    p.handle(&exec(100, 1, "/bin/bash"));
    p.handle(&fork(200, 100));
    p.handle(&exec(200, 100, "/usr/bin/make"));
    p.handle(&fork(300, 200));
    // The parent exits before the child's exec is processed.
    p.handle(&encode(&Event::Exit(ExitInfo {
        ktime_ns: 30,
        pid: 200,
        start_ns: 200,
        exit_code: 0,
    })));
    p.handle(&exec(300, 200, "/usr/bin/cc"));
    let recs = lines(&p.take_batch());
    assert_eq!(recs.len(), 3, "one record per exec, none for fork/exit");
    let anc: Vec<u64> = recs[2]["actor"]["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(anc, vec![200, 100, 1]);
    assert_eq!(recs[2]["actor"]["ancestry"][0]["exe"], "/usr/bin/make");
    p.reap(u64::MAX);
    assert!(p.table().get(200).is_none());
    assert!(p.table().get(300).is_some());
}

#[test]
fn events_and_records_are_counted_by_kind() {
    let mut p = pipeline();
    let m = Arc::new(Metrics::new());
    p.set_metrics(Arc::clone(&m));
    p.handle(&fork(100, 1));
    p.handle(&exec(100, 1, "/bin/true"));
    p.handle(b"garbage");
    p.report_lost(1, LostCounts::default());
    let get = |v: Vec<(&str, u64)>, k: &str| v.into_iter().find(|(n, _)| *n == k).unwrap().1;
    assert_eq!(get(m.events_by_kind(), "exec"), 1);
    assert_eq!(get(m.events_by_kind(), "fork"), 1);
    assert_eq!(get(m.records_by_kind(), "exec"), 1);
    assert_eq!(get(m.records_by_kind(), "lost"), 1);
}

#[test]
fn aggregates_report_deltas_per_key_and_survive_lru_resets() {
    let mut p = pipeline();
    p.handle(&fork(100, 1));
    p.handle(&exec(100, 1, "/usr/bin/strace"));
    p.take_batch();
    let key = AggKey {
        actor_tgid: 100,
        target_pid: 1,
        access: AccessKind::Ptrace as u32,
        outcome: 0,
        request: 2,
    };
    p.report_aggregates(1, 10, [(key, 0)]);
    assert!(p.take_batch().is_empty(), "no repeats, no record");
    p.report_aggregates(2, 10, [(key, 500)]);
    p.report_aggregates(3, 10, [(key, 500)]);
    p.report_aggregates(4, 10, [(key, 800)]);
    p.report_aggregates(5, 10, [(key, 40)]); // evicted and re-created
    let recs = lines(&p.take_batch());
    let counts: Vec<u64> = recs
        .iter()
        .map(|r| r["detail"]["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, vec![500, 300, 40]);
    assert_eq!(recs[0]["detail"]["aggregate"], true);
    assert_eq!(recs[0]["detail"]["ptrace_request"], "PTRACE_PEEKDATA");
    assert_eq!(recs[0]["detail"]["window_s"], 10);
    assert_eq!(recs[0]["actor"]["exe"], "/usr/bin/strace");
}

#[test]
fn refused_attempts_aggregate_per_actor_without_a_target() {
    let mut p = pipeline();
    p.handle(&fork(100, 1));
    p.handle(&exec(100, 1, "/usr/bin/gdb"));
    p.take_batch();
    let key = AggKey {
        actor_tgid: 100,
        target_pid: 0,
        access: AccessKind::Ptrace as u32,
        outcome: agent_common::agg_outcome::REFUSED,
        request: 16,
    };
    p.report_aggregates(2, 10, [(key, 4000)]);
    let recs = lines(&p.take_batch());
    assert_eq!(recs.len(), 1, "{recs:?}");
    let d = &recs[0]["detail"];
    assert_eq!(d["count"], 4000);
    assert_eq!(d["result"], "refused");
    assert_eq!(d["ptrace_request"], "PTRACE_ATTACH");
    assert!(
        recs[0].get("target").is_none_or(Value::is_null),
        "{}",
        recs[0]
    );
}

#[test]
fn access_to_oneself_is_not_a_record() {
    let mut p = pipeline();
    p.handle(&fork(100, 1));
    let a = AccessInfo {
        ktime_ns: 1,
        flags: 0,
        pid: 100,
        tgid: 100,
        start_ns: 100,
        access: AccessKind::PerfOpen,
        target_pid: 100,
        request: 1,
        arg: 0,
        ret: None,
        count: 1,
        aggregate: false,
        io_uring: false,
        at_access: false,
        writes: false,
        refused: false,
        target_host_pid: None,
        ppid: 1,
        creds: Creds::default(),
        ns: NsIds {
            pid_ns: 1,
            user_ns: 1,
            mnt_ns: 1,
            ns_pid: 100,
        },
        cgroup_id: 0,
        comm: b"perf".to_vec(),
        name: Vec::new(),
        enforcement: Enforcement::None,
        rule: None,
    };
    p.handle(&encode(&Event::Access(a.clone())));
    assert!(p.take_batch().is_empty());
    assert_eq!(p.stats().self_access, 1);
    p.handle(&encode(&Event::Access(AccessInfo { target_pid: 1, ..a })));
    assert_eq!(lines(&p.take_batch()).len(), 1);
}

#[test]
fn garbage_is_counted_and_reported_as_lost() {
    let mut p = pipeline();
    p.handle(&[1, 2, 3]);
    p.handle(&[]);
    assert_eq!(p.stats().undecodable, 2);
    assert!(p.take_batch().is_empty());
    p.report_lost(5, LostCounts::default());
    let recs = lines(&p.take_batch());
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["kind"], "lost");
    assert_eq!(recs[0]["detail"]["counts"]["undecodable"], 2);
}

#[test]
fn lost_records_carry_deltas_and_only_when_counters_move() {
    let mut p = pipeline();
    let k = |exec| LostCounts {
        exec,
        ..Default::default()
    };
    p.report_lost(1, k(0));
    assert!(p.take_batch().is_empty(), "nothing lost, no record");
    p.report_lost(2, k(5));
    p.report_lost(3, k(5));
    p.report_lost(4, k(12));
    let recs = lines(&p.take_batch());
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["detail"]["counts"]["exec"], 5);
    assert_eq!(recs[1]["detail"]["counts"]["exec"], 7);
    assert_eq!(recs[1]["detail"]["cumulative"]["exec"], 12);
}
