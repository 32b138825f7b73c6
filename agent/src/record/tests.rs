//! The builder alone: key order of every record struct (what lets the
//! canonical writer stream them), numbering across kinds, the `lost`
//! record. Records of real events are tested through the pipeline
//! (`runtime::pipeline`), where actor, target and verdict are made.

use std::path::Path;

use agent_common::{Creds, NsIds};
use serde_json::Value;

use super::*;
use crate::{
    enrich::{ActorFacts, Enricher, Escapes},
    process::{ProcessEntry, ProcessTable},
};

fn builder() -> RecordBuilder {
    RecordBuilder::new(
        Host {
            name: "h".into(),
            id: "m".into(),
            boot_id: "b".into(),
        },
        Clock::with_offset(0),
    )
}

fn actor() -> Actor {
    let mut t = ProcessTable::new(100, 1, 1);
    for (pid, ppid, comm) in [(1, 0, "init"), (30, 1, "bash"), (40, 30, "echo")] {
        let mut e = ProcessEntry::new(pid, 1, ppid);
        e.comm = comm.as_bytes().into();
        e.exe = format!("/usr/bin/{comm}").as_bytes().into();
        t.insert(e);
    }
    let mut enricher = Enricher::new(
        Path::new("/nonexistent-debugmon/etc"),
        Path::new("/nonexistent-debugmon/cgroup"),
        Path::new("/nonexistent-debugmon/proc"),
        8,
    );
    let argv = vec![b"/bin/echo".to_vec()];
    let facts = ActorFacts {
        pid: 40,
        ppid: 30,
        start_ns: 1,
        creds: Creds::default(),
        cgroup_id: 1,
        ns: NsIds::default(),
        comm: b"echo",
        exe: b"/bin/echo",
        exe_file: None,
        argv: &argv,
        tty: b"pts/1",
        cwd: Some(b"/"),
    };
    enricher.actor(&facts, &t, &mut Escapes(Vec::new()))
}

/// serde writes a struct's fields in declaration order, and
/// `split_members` takes only sorted keys: a struct that fails here
/// still serializes correctly, but through the canonical writer's
/// buffer instead of streaming.
#[test]
fn record_structs_declare_fields_in_key_order() {
    fn sorted<T: Serialize>(what: &str, v: &T) {
        let raw = serde_json::to_vec(v).unwrap();
        assert!(
            canonical::split_members(&raw).is_some(),
            "{what}: fields not in key order: {}",
            String::from_utf8_lossy(&raw)
        );
    }
    let b = builder();
    let actor = actor();
    sorted("Actor", &actor);
    sorted("AncestorOut", &actor.ancestry[0]);
    sorted("Namespaces", &actor.namespaces);
    sorted("Host", b.host());
    sorted(
        "Ssh",
        &crate::enrich::Ssh {
            src_ip: "192.0.2.1".into(),
            src_port: 22,
        },
    );
    let detail = ExecDetail {
        argv_truncated: false,
        argv_bytes: 1,
        escaped: vec!["argv"],
        incomplete: vec!["exe"],
        debugger: Some("gdb".into()),
        debug_switches: vec![crate::enrich::switches::Switch {
            interface: "jdwp",
            risk: Some("any_address"),
            via: "argv".into(),
        }],
        env: [("LD_PRELOAD".to_owned(), "/x".to_owned())].into(),
        env_flags: vec!["cut"],
    };
    sorted("ExecDetail", &detail);
    let verdict = Verdict {
        action: "deny",
        enforced: Some("lsm"),
        rule: Some("r".into()),
        severity: Some("high".into()),
        reason: Some("why".into()),
        grant_id: Some("g".into()),
        tags: vec!["attack.t1055".into()],
    };
    sorted("Verdict", &verdict);
    // The record's own members, written one by one, in key order; each
    // where the batch says it is.
    let mut b = b;
    let mut batch = Batch::default();
    let target = Target::unresolved(7);
    let parts = Parts {
        kind: Kind::Exec,
        actor: Some(&actor),
        target: Some(&target),
        detail,
        verdict: Some(&verdict),
    };
    b.write_into(&mut batch, 1, parts, true).unwrap();
    let keys: Vec<&str> = batch.members.iter().map(|(k, _)| *k).collect();
    let all = ["actor", "decision", "detail", "host", "kind"];
    let all = [
        &all[..],
        &["monotonic_ns", "schema", "seq", "target", "time"],
    ]
    .concat();
    assert_eq!(keys, all);
    let line = &batch.bytes[batch.records[0].line.clone()];
    let v: Value = serde_json::from_slice(line).unwrap();
    assert_eq!(canonical::to_vec(&v), line);
    for (k, at) in &batch.members {
        assert_eq!(canonical::to_vec(&v[k]), &batch.bytes[at.clone()], "{k}");
    }
}

#[test]
fn seq_increments_across_kinds() {
    let mut b = builder();
    let mut batch = Batch::default();
    let started = serde_json::json!({"event": "started"});
    b.write_into(&mut batch, 1, Parts::note(Kind::Agent, started), true)
        .unwrap();
    let counts = LostCounts {
        exec: 3,
        ..Default::default()
    };
    let lost = detail::LostDetail::new(counts, LostCounts::default());
    b.write_into(&mut batch, 2, Parts::note(Kind::Lost, lost), true)
        .unwrap();
    let out = batch.bytes;
    let lines: Vec<Value> = out
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[1]["seq"], 2);
    assert_eq!(lines[1]["kind"], "lost");
    assert_eq!(lines[1]["detail"]["counts"]["exec"], 3);
    assert_eq!(lines[1]["detail"]["total"], 3);
    assert!(lines[1].get("actor").is_none());
    assert_eq!(b.last_kind(), Some(Kind::Lost));
    assert_eq!(b.seq(), 2);
}
