//! Routine opens through the pipeline: environment reads by the host's
//! process tools are inventory that no `mem_read` rule matches, and many
//! opens by one process are one record and then an aggregate with the
//! count and the targets.

use std::{path::Path, sync::Arc};

use agent_common::{AccessKind, Creds, Enforcement, NsIds};
use serde_json::Value;

use super::*;
use crate::{
    event::{Event, ExeFile, encode},
    process::ProcessEntry,
    sys::host::Host,
};

const POLICY: &str = r#"
process_tools: [/usr/bin/ps]
rules:
  - name: environ-of-sshd
    on: [mem_read]
    target: { comm: [sshd] }
    action: alert
    severity: critical
"#;

/// sshd (20) and, reading environments, pid 30 running `exe` whose file
/// is `file` (the kernel's view).
fn pipeline(exe: &str, file: &Path) -> Pipeline {
    let mut t = ProcessTable::new(100, 1, 1);
    let mut sshd = ProcessEntry::new(20, 1, 1);
    sshd.comm = b"sshd".as_slice().into();
    t.insert(sshd);
    let mut tool = ProcessEntry::new(30, 1, 20);
    tool.comm = b"ps".as_slice().into();
    tool.exe = exe.as_bytes().into();
    tool.exe_file = ExeFile::of(&std::fs::metadata(file).unwrap());
    t.insert(tool);
    for pid in 40..60 {
        t.insert(ProcessEntry::new(pid, 1, 1));
    }
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
    let mut p = Pipeline::new(t, enricher, RecordBuilder::new(host, Clock::with_offset(0)));
    let set = PolicySet::from_texts(&[("t.yaml", POLICY)]).expect("valid policy");
    *p.decider_mut() = Decider::new(Arc::new(set), None);
    p
}

fn environ_read(target: u32) -> Vec<u8> {
    encode(&Event::Access(AccessInfo {
        ktime_ns: 5,
        flags: 0,
        pid: 30,
        tgid: 30,
        start_ns: 0,
        access: AccessKind::ProcEnviron,
        target_pid: target,
        request: 0,
        arg: 0,
        ret: Some(3),
        count: 1,
        aggregate: false,
        io_uring: false,
        at_access: false,
        writes: false,
        refused: false,
        target_host_pid: Some(target),
        ppid: 20,
        creds: Creds::default(),
        ns: NsIds::default(),
        cgroup_id: 0,
        comm: b"ps".to_vec(),
        name: Vec::new(),
        enforcement: Enforcement::None,
        rule: None,
    }))
}

fn records(p: &mut Pipeline) -> Vec<Value> {
    p.take_batch()
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn ps_reading_every_environment_is_one_record_then_a_count() {
    let ps = Path::new("/usr/bin/ps");
    if !ps.exists() {
        eprintln!("skipping: no /usr/bin/ps");
        return;
    }
    let mut p = pipeline("/usr/bin/ps", ps);
    for pid in 40..60 {
        p.handle(&environ_read(pid));
    }
    let first = records(&mut p);
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(first[0]["detail"]["inventory"], true, "{}", first[0]);
    p.report_aggregates(10, 10, []);
    let agg = records(&mut p);
    assert_eq!(agg.len(), 1, "{agg:#?}");
    let d = &agg[0]["detail"];
    assert_eq!(d["aggregate"], true);
    assert_eq!(d["count"], 19);
    assert_eq!(d["targets"].as_array().unwrap().len(), fold::MAX_TARGETS);
    assert_eq!(d["targets"][0], 41);
    assert!(agg[0].get("decision").is_none(), "{}", agg[0]);
    // A quiet window, then the next one: nothing, then nothing to fold.
    p.report_aggregates(20, 10, []);
    assert!(records(&mut p).is_empty());
}

#[test]
fn the_environment_of_a_protected_process_alerts_unless_read_by_a_listed_tool() {
    let ps = Path::new("/usr/bin/ps");
    if !ps.exists() {
        eprintln!("skipping: no /usr/bin/ps");
        return;
    }
    // The real tool: inventory, no alert.
    let mut p = pipeline("/usr/bin/ps", ps);
    p.handle(&environ_read(20));
    let r = records(&mut p);
    assert!(r[0].get("decision").is_none(), "{}", r[0]);
    assert_eq!(r[0]["detail"]["inventory"], true);
    // A copy of it elsewhere, or another program calling itself ps:
    // the path is not a listed tool's, and the alert fires.
    let copy = std::env::temp_dir().join(format!("dm-ps-{}", std::process::id()));
    std::fs::copy(ps, &copy).unwrap();
    let mut p = pipeline(copy.to_str().unwrap(), &copy);
    p.handle(&environ_read(20));
    let r = records(&mut p);
    let _ = std::fs::remove_file(&copy);
    assert_eq!(r[0]["decision"]["rule"], "environ-of-sshd", "{}", r[0]);
    assert!(r[0]["detail"].get("inventory").is_none());
    // The tool's path, but the file the kernel ran is another one.
    let mut p = pipeline("/usr/bin/ps", Path::new("/bin/sh"));
    p.handle(&environ_read(20));
    let r = records(&mut p);
    assert_eq!(r[0]["decision"]["rule"], "environ-of-sshd", "{}", r[0]);
}
