//! Cost of sealing one record (canonical encoding, SHA-256, Ed25519, tip
//! write) and of redacting a typical argv, on an exec-sized record.

use std::hint::black_box;

use agent::record::{redact::Redactor, seal::Sealer};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

fn exec_record() -> Map<String, Value> {
    let v = json!({
        "schema": 1,
        "time": "2026-05-01T12:00:00.123456789Z",
        "monotonic_ns": 123_456_789_u64,
        "host": {"name": "db-7", "id": "4c4c4544004a4b10804cb8c04f303032", "boot_id": "5e6f6a3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"},
        "kind": "exec",
        "actor": {
            "pid": 4242, "tgid": 4242, "ppid": 4200, "uid": 1000, "gid": 1000, "euid": 0, "egid": 0,
            "auid": 1000, "session_id": 7, "comm": "gdb", "exe": "/usr/bin/gdb",
            "argv": ["gdb", "-p", "1234", "-batch", "-ex", "bt"], "cgroup_id": 5123, "start_ns": 99,
            "ancestry": [{"pid": 4200, "comm": "bash", "exe": "/usr/bin/bash"}, {"pid": 4100, "comm": "sshd", "exe": "/usr/sbin/sshd"}, {"pid": 1, "comm": "systemd", "exe": "/usr/lib/systemd/systemd"}]
        },
        "detail": {"argv_truncated": false, "argv_bytes": 27}
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut sealer = Sealer::open(&dir.path().join("state"), &dir.path().join("host.key")).unwrap();
    let rec = exec_record();
    c.bench_function("seal_exec_record", |b| {
        b.iter(|| black_box(sealer.seal(black_box(rec.clone())).unwrap()));
    });
    let redactor = Redactor::default();
    let argv: Vec<String> = [
        "mysql",
        "-uroot",
        "-phunter2",
        "--host",
        "db",
        "-e",
        "select 1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    c.bench_function("redact_argv_7", |b| {
        b.iter(|| {
            let mut a = argv.clone();
            black_box(redactor.redact_argv(&mut a))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
