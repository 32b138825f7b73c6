//! Cost of the userspace hot path per kernel event, with the running host's
//! enricher (real /etc, /proc, cgroup mount, as the agent has): decoding an
//! exec, building an exec record, and the full `Pipeline::handle` of the
//! fork + exec + exit that one short-lived process makes; then the
//! delivery thread's CPU work on those records (parse, redact, seal
//! without a signature), in groups the size an exec storm makes.

use std::{hint::black_box, sync::Arc, time::Duration};

use agent::{
    enrich::Enricher,
    event::{Event, ExecInfo, ExitInfo, ForkInfo, decode, encode},
    process::{ProcessEntry, ProcessTable},
    record::{RecordBuilder, redact::Redactor, seal::Sealer},
    runtime::pipeline::Pipeline,
    sink::delivery::{prepare_built, prepare_canonical},
    sys::host::{Clock, Host},
};
use agent_common::{Creds, NsIds};
use criterion::{Criterion, criterion_group, criterion_main};

/// Pids far above what the host uses, so enrichment misses in /proc as it
/// does for a process that already exited.
const PID_BASE: u32 = 3_000_000;

fn creds() -> Creds {
    Creds {
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        auid: 1000,
        sessionid: 3,
    }
}

fn ns(pid: u32) -> NsIds {
    NsIds {
        pid_ns: 1,
        user_ns: 1,
        mnt_ns: 1,
        ns_pid: pid,
    }
}

fn fork(pid: u32, t: u64) -> Vec<u8> {
    encode(&Event::Fork(ForkInfo {
        ktime_ns: t,
        flags: 0,
        pid,
        start_ns: t,
        parent_tgid: PID_BASE,
        parent_start_ns: 1,
        creds: creds(),
        cgroup_id: 0,
        ns: ns(pid),
        comm: b"bash".to_vec(),
    }))
}

fn exec(pid: u32, t: u64) -> Vec<u8> {
    encode(&Event::Exec(ExecInfo {
        ktime_ns: t + 1,
        // The kernel walked the cwd, as it does for every exec it can.
        flags: agent_common::flags::CWD_RESOLVED,
        pid,
        tgid: pid,
        start_ns: t,
        ppid: PID_BASE,
        old_pid: pid,
        creds: creds(),
        cgroup_id: 0,
        ns: ns(pid),
        comm: b"true".to_vec(),
        tty: b"pts/0".to_vec(),
        filename: b"/usr/bin/true".to_vec(),
        argv: vec![b"/bin/true".to_vec(), b"dmb-nonce-0-12345".to_vec()],
        argv_truncated: false,
        argv_total_len: 28,
        exe_file: Default::default(),
        cwd: Some(b"/srv/app".to_vec()),
    }))
}

fn exit(pid: u32, t: u64) -> Vec<u8> {
    encode(&Event::Exit(ExitInfo {
        ktime_ns: t + 2,
        pid,
        start_ns: t,
        exit_code: 0,
    }))
}

fn pipeline() -> Pipeline {
    // 1 ms exit grace: the bench's clock advances 1 µs per process.
    let mut table = ProcessTable::new(262_144, 1_000_000, 10_000_000);
    let mut shell = ProcessEntry::new(PID_BASE, 1, 1);
    shell.comm = b"bash".as_slice().into();
    shell.exe = b"/usr/bin/bash".as_slice().into();
    table.insert(shell);
    let host = Host {
        name: "bench".into(),
        id: "0123456789abcdef".into(),
        boot_id: "b".into(),
    };
    Pipeline::new(
        table,
        Enricher::for_host(16),
        RecordBuilder::new(host, Clock::sample()),
    )
}

fn bench(c: &mut Criterion) {
    let wire = exec(PID_BASE + 1, 1_000);
    c.bench_function("pipeline/decode_exec", |b| {
        b.iter(|| black_box(decode(black_box(&wire)).expect("valid event")));
    });

    // One exec record per iteration, into the batch the agent ships.
    let mut p = pipeline();
    p.handle(&fork(PID_BASE + 1, 1_000));
    c.bench_function("pipeline/handle_exec_record", |b| {
        b.iter(|| {
            p.handle(black_box(&wire));
            if p.pending_bytes() > 256 * 1024 {
                black_box(p.take_batch());
            }
        });
    });

    // Fork, exec and exit of a fresh process per iteration (an exec storm).
    // Encoded up front so only the pipeline is timed; at each wrap the table
    // is reaped so the pids start fresh.
    const PROCS: u32 = 65_536;
    let events: Vec<[Vec<u8>; 3]> = (0..PROCS)
        .map(|i| {
            let (pid, t) = (PID_BASE + 1 + i, u64::from(i) * 1_000 + 10_000);
            [fork(pid, t), exec(pid, t), exit(pid, t)]
        })
        .collect();
    let mut p = pipeline();
    let mut n: usize = 0;
    c.bench_function("pipeline/handle_fork_exec_exit", |b| {
        b.iter(|| {
            for e in &events[n] {
                p.handle(black_box(e));
            }
            n += 1;
            if n == events.len() {
                n = 0;
                p.reap(u64::MAX);
            }
            if p.pending_bytes() > 256 * 1024 {
                black_box(p.take_batch());
            }
        });
    });
}

/// Records per group the delivery thread gets in an exec storm (about
/// four execs per timed read on the bench machine).
const GROUP: usize = 4;

fn bench_delivery(c: &mut Criterion) {
    let mut p = pipeline();
    let redactor = Arc::new(Redactor::default());
    p.set_redactor(Arc::clone(&redactor));
    for i in 0..GROUP as u32 {
        let (pid, t) = (PID_BASE + 1 + i, u64::from(i) * 1_000 + 10_000);
        for e in [fork(pid, t), exec(pid, t), exit(pid, t)] {
            p.handle(&e);
        }
    }
    let batch = p.take_records();
    assert_eq!(batch.records.len(), GROUP, "one record per exec");
    let lines: Vec<&[u8]> = batch
        .bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), GROUP, "one record per exec");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sealer =
        Sealer::open(&dir.path().join("state"), &dir.path().join("host.key")).expect("sealer");
    // The lines parsed again (the path of a line without the pipeline's
    // member boundaries).
    c.bench_function("delivery/prepare_seal_group_of_4_execs", |b| {
        b.iter(|| {
            let records = lines
                .iter()
                .map(|l| prepare_canonical(&redactor, l).expect("canonical"))
                .collect();
            black_box(sealer.seal_group(records, false).expect("sealed"))
        });
    });
    // The members where the pipeline says they are.
    c.bench_function("delivery/built_seal_group_of_4_execs", |b| {
        b.iter(|| {
            let records = (batch.records.iter())
                .map(|r| prepare_built(&redactor, &batch, r).expect("clean"))
                .collect();
            black_box(sealer.seal_group(records, false).expect("sealed"))
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench, bench_delivery
}
criterion_main!(benches);
