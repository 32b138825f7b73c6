//! docs/record.schema.json against the examples in docs/records.md and
//! against records the agent really builds and seals.

use std::path::Path;

use agent::{
    enrich::switches,
    event::{AccessInfo, Event, ExecInfo, Kind, encode},
    inventory::{
        DebugPort, Installed, Inventory, KernelSettings, Preload, ProcRef, Switched, Traced,
    },
    process::{ProcessEntry, ProcessTable},
    record::{LostCounts, RecordBuilder, seal::Sealer},
    runtime::pipeline::Pipeline,
    sys::host::{Clock, Host},
};
use agent_common::{AccessKind, Creds, Enforcement};
use serde_json::{Value, json};

fn docs(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&docs("record.schema.json")).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, rec: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(rec)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the schema: {errors:#?}\n{rec:#}"
    );
}

#[test]
fn every_documented_example_matches_the_schema() {
    let v = validator();
    let md = docs("records.md");
    let mut kinds = Vec::new();
    for block in md.split("```json\n").skip(1) {
        let json_text = block.split("\n```").next().unwrap();
        let rec: Value = serde_json::from_str(json_text).unwrap();
        assert_valid(&v, &rec, &format!("example {}", rec["kind"]));
        kinds.push(rec["kind"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    // Some kinds show more than one event (`agent`: start and heartbeat).
    kinds.dedup();
    let mut all = [
        "exec",
        "ptrace",
        "mem_access",
        "perf_attach",
        "bpf",
        "grant",
        "policy",
        "agent",
        "lost",
        "inventory",
    ];
    all.sort_unstable();
    assert_eq!(kinds, all, "an example of every kind");
}

#[test]
fn the_schema_rejects_what_it_should() {
    let v = validator();
    let md = docs("records.md");
    let block = md
        .split("```json\n")
        .nth(1)
        .unwrap()
        .split("\n```")
        .next()
        .unwrap();
    let good: Value = serde_json::from_str(block).unwrap();
    for (field, bad) in [
        ("hash", json!("not-hex")),
        ("kind", json!("teleport")),
        ("seq", json!(0)),
        ("unknown_top_level", json!(1)),
    ] {
        let mut rec = good.clone();
        rec[field] = bad;
        assert!(!v.is_valid(&rec), "{field} should be rejected");
    }
    // A heartbeat must carry what a reader judges the agent by.
    let mut beat = good.clone();
    beat["detail"] = json!({"event": "heartbeat", "interval_s": 5, "uptime_s": 5,
        "events": 0, "records": 2, "lost": 0});
    assert_valid(&v, &beat, "a heartbeat");
    for field in ["interval_s", "uptime_s", "events", "records", "lost"] {
        let mut rec = beat.clone();
        rec["detail"].as_object_mut().unwrap().remove(field);
        assert!(!v.is_valid(&rec), "a heartbeat without {field}");
    }
    beat["detail"]["interval_s"] = json!(0);
    assert!(!v.is_valid(&beat), "a heartbeat every 0 s");
}

/// An inventory with one of each finding: a traced process, a debug port
/// on every address, a process started with LD_PRELOAD.
fn inventory_fixture() -> Inventory {
    let bash = ProcRef {
        pid: 30,
        comm: "bash".into(),
        exe: "/usr/bin/bash".into(),
        uid: 0,
    };
    Inventory {
        debuggers: vec![Installed {
            class: "gdb".into(),
            path: "/usr/bin/gdb".into(),
        }],
        traced: vec![Traced {
            process: ProcRef {
                pid: 40,
                ..bash.clone()
            },
            tracer: bash.clone(),
            debugger: None,
            findings: vec!["traced".into(), "traced:non_debugger".into()],
        }],
        debug_ports: vec![DebugPort {
            process: bash.clone(),
            port: 5678,
            bind: "0.0.0.0".into(),
            interface: "debugpy",
            risk: Some("any_address"),
            findings: vec!["debug_port".into(), "debug_port:any_address".into()],
        }],
        switches: vec![Switched {
            process: bash,
            switches: switches::detect(
                "/usr/bin/bash",
                &["bash".into()],
                &[("LD_PRELOAD".into(), "/usr/lib/x.so".into())],
            ),
            findings: vec!["debug_switch:ld_preload".into()],
        }],
        ld_so_preload: Some(Preload {
            path: "/etc/ld.so.preload".into(),
            libraries: vec!["/usr/lib/x.so".into()],
        }),
        kernel: KernelSettings {
            ptrace_scope: Some(1),
            lsm: Some(vec!["bpf".into()]),
            bpf_lsm: Some(true),
            ..KernelSettings::default()
        },
        findings: vec!["ld_so_preload".into()],
        skipped: 1,
    }
}

fn exec_info() -> ExecInfo {
    ExecInfo {
        ktime_ns: 5,
        flags: agent_common::flags::CWD_RESOLVED,
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
        ns: agent_common::NsIds::default(),
        comm: b"gdb".to_vec(),
        tty: b"pts/0".to_vec(),
        filename: b"/usr/bin/gdb\xff".to_vec(),
        argv: vec![b"gdb".to_vec(), b"-p".to_vec(), b"1".to_vec()],
        argv_truncated: false,
        argv_total_len: 9,
        exe_file: agent::event::ExeFile {
            ino: 42,
            dev: 8,
            uid: 0,
            mode: 0o100755,
        },
        cwd: Some(b"/srv/\xffapp".to_vec()),
    }
}

#[test]
fn records_built_and_sealed_by_the_agent_match_the_schema() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let mut sealer = Sealer::open(&dir.path().join("s"), &dir.path().join("k")).unwrap();
    let host = Host {
        name: "h".into(),
        id: "m".into(),
        boot_id: "b".into(),
    };
    let enricher = agent::enrich::Enricher::new(
        std::path::Path::new("/etc"),
        std::path::Path::new("/nonexistent-debugmon/cgroup"),
        std::path::Path::new("/nonexistent-debugmon/proc"),
        8,
    );
    let b = RecordBuilder::new(host, Clock::sample());
    let mut table = ProcessTable::new(16, 1, 1);
    let mut bash = ProcessEntry::new(30, 1, 1);
    bash.comm = b"bash".as_slice().into();
    bash.exe = b"/usr/bin/bash".as_slice().into();
    table.insert(bash);
    // Records are built by the pipeline, which enriches and decides.
    let mut p = Pipeline::new(table, enricher, b);
    let pk = sealer.public_key_hex();
    p.note(
        1,
        Kind::Agent,
        json!({"event": "started", "public_key": pk}),
    );
    p.handle(&encode(&Event::Exec(exec_info())));
    // A kill by the fallback, of an io_uring open of another's memory.
    let killed = AccessInfo {
        ktime_ns: 6,
        flags: 0,
        pid: 30,
        tgid: 30,
        start_ns: 1,
        access: AccessKind::ProcMem,
        target_pid: 40,
        request: 0,
        arg: 0,
        ret: Some(5),
        count: 1,
        aggregate: false,
        io_uring: true,
        at_access: true,
        refused: false,
        writes: true,
        target_host_pid: Some(40),
        ppid: 1,
        creds: Creds::default(),
        ns: agent_common::NsIds::default(),
        cgroup_id: 1,
        comm: b"bash".to_vec(),
        name: Vec::new(),
        enforcement: Enforcement::Killed,
        rule: Some(u32::MAX),
    };
    p.handle(&encode(&Event::Access(killed.clone())));
    // The kernel's own records: a BPF-LSM refusal with no syscall record
    // of its own, a protected program exec'd under a tracer, a reach for
    // the agent's maps.
    for (access, request, arg, enforcement) in [
        (AccessKind::LsmAccess, 2, 0, Enforcement::DeniedLsm),
        (AccessKind::ExecTraced, 0, 7, Enforcement::Killed),
        (
            AccessKind::AgentObject,
            14,
            (1u64 << 32) | 40,
            Enforcement::DeniedLsm,
        ),
    ] {
        p.handle(&encode(&Event::Access(AccessInfo {
            access,
            request,
            arg,
            enforcement,
            ret: None,
            io_uring: false,
            at_access: false,
            refused: false,
            ..killed.clone()
        })));
    }
    p.report_lost(
        9,
        LostCounts {
            exec: 2,
            ..LostCounts::default()
        },
    );
    p.report_inventory(9, &inventory_fixture());
    p.note(
        9,
        Kind::Agent,
        json!({"event": "heartbeat", "interval_s": 5, "uptime_s": 0, "events": 2,
            "records": 4, "lost": 2}),
    );
    p.note(
        10,
        Kind::Agent,
        json!({"event": "stopped", "events": 1, "records": 5}),
    );
    let out = p.take_batch();
    let mut n = 0;
    let mut events = Vec::new();
    for line in out.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let unsealed: Value = serde_json::from_slice(line).unwrap();
        assert!(!v.is_valid(&unsealed), "an unsealed record lacks hash/sig");
        let sealed = sealer.seal_builder_line(line).unwrap();
        let rec: Value = serde_json::from_slice(&sealed.line).unwrap();
        assert_valid(&v, &rec, &format!("sealed {}", rec["kind"]));
        events.push(format!("{}/{}", rec["kind"], rec["detail"]["event"]));
        n += 1;
    }
    assert_eq!(n, 13, "{events:?}");
    for e in [
        "\"ptrace\"/\"exec_under_trace\"",
        "\"agent\"/\"tamper\"",
        "\"inventory\"/\"snapshot\"",
        "\"inventory\"/\"finding\"",
    ] {
        assert!(events.iter().any(|x| x == e), "{e} in {events:?}");
    }
    assert_eq!(sealer.next_seq(), 14);
}
