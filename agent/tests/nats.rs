//! Against a real nats-server (2.15, installed by `cargo xtask setup`):
//! no record lost or duplicated across a NATS outage and an agent crash;
//! tampering found by `verify`; TLS with the right and a wrong CA; a
//! subject prefix followed by the sink, the stream, `verify` and `tail`;
//! a host gone silent between heartbeats named by `verify`, `tail` and
//! `review`.

mod support;

use std::{path::Path, time::Duration};

use agent::{
    cli::{
        tail::{TailArgs, run_tail},
        verify::{VerifyArgs, VerifySource, read_source, run_verify},
    },
    error::error_chain,
    record::{
        seal::Sealer,
        verify::{Problem, trust::Trust},
    },
    review::{Format, Review, filter::Filter, render, summary::Summary},
    sink::nats::{NatsConfig, NatsError, NatsSink, TlsConfig, connect, ensure_stream, jetstream},
    spool::{SharedSpool, Spool, SpoolConfig},
};
use serde_json::{Map, Value, json};
use support::{NatsServer, free_port, wait_until};

fn record(kind: &str, i: u64, detail: Value) -> Map<String, Value> {
    let mut v = json!({
        "schema": 1,
        "time": "2026-01-01T00:00:00.000000000Z",
        "monotonic_ns": i,
        "host": {"name": "test-host.example", "id": "machine-1", "boot_id": "boot-1"},
        "kind": kind,
        "detail": detail,
    });
    if i > 0 && i.is_multiple_of(97) {
        v["decision"] = json!({"action": "deny", "enforced": true, "rule": "r", "severity": "critical", "reason": "test", "grant_id": null});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

struct Agent {
    sealer: Sealer,
    spool: SharedSpool,
    /// Records sealed with an alert severity.
    alerts: u64,
    /// The spool's last seq when this run opened it.
    opened_at: u64,
}

impl Agent {
    /// Opens from disk as a (re)started agent does, and seals the start record.
    fn start(dir: &Path) -> Self {
        let spool = Spool::open(&spool_cfg(dir)).unwrap();
        let opened_at = spool.last_appended().map_or(0, |t| t.seq);
        let sealer = Sealer::open_with_tip(
            &dir.join("state"),
            &dir.join("host.key"),
            spool.last_appended(),
        )
        .unwrap();
        let mut a = Self {
            sealer,
            spool: SharedSpool::new(spool),
            alerts: 0,
            opened_at,
        };
        let pk = a.sealer.public_key_hex();
        let rec = a
            .sealer
            .seal(record(
                "agent",
                0,
                json!({"event": "started", "public_key": pk}),
            ))
            .unwrap();
        a.spool.append_batch(&[rec]).unwrap();
        a
    }

    /// Seals and spools records until the chain reaches `upto`.
    fn produce(&mut self, upto: u64) {
        while self.sealer.next_seq() <= upto {
            let end = (self.sealer.next_seq() + 99).min(upto);
            let batch: Vec<_> = (self.sealer.next_seq()..=end)
                .map(|i| {
                    self.sealer
                        .seal(record(
                            "exec",
                            i,
                            json!({"argv_truncated": false, "argv_bytes": i}),
                        ))
                        .unwrap()
                })
                .collect();
            self.alerts += batch.iter().filter(|s| s.severity.is_some()).count() as u64;
            self.spool.append_batch(&batch).unwrap();
        }
    }

    /// What the sink is told: entries up to here may be out already.
    fn tip(&self) -> u64 {
        self.opened_at
    }

    fn pending(&self) -> u64 {
        self.spool.lock().stats().pending
    }
}

fn spool_cfg(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.join("spool"),
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
    }
}

fn nats_cfg(port: u16) -> NatsConfig {
    NatsConfig {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        ack_timeout_ms: 2_000,
        connect_timeout_ms: 1_000,
        backoff_min_ms: 50,
        backoff_max_ms: 1_000,
        ..NatsConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_duplicated_across_an_outage_and_a_crash() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("jetstream");
    let port = free_port();
    let mut server = NatsServer::start(port, &store, &[]);
    let cfg = nats_cfg(port);

    let mut agent = Agent::start(dir.path());
    let sink = NatsSink::spawn(cfg.clone(), agent.spool.clone(), agent.tip());
    agent.produce(4_000);
    // Crash mid-publish: no graceful shutdown, no Sealer::close.
    wait_until("some records acked", Duration::from_secs(30), || {
        sink.stats().acked > 500
    })
    .await;
    let before_crash = sink.abort();
    assert!(
        before_crash.acked < 4_000,
        "the crash should interrupt the drain: {before_crash:?}"
    );
    let alerts_before_crash = agent.alerts;
    drop(agent);

    let mut agent = Agent::start(dir.path());
    let sink = NatsSink::spawn(cfg.clone(), agent.spool.clone(), agent.tip());
    agent.produce(6_000);
    wait_until("the spool drained", Duration::from_secs(60), || {
        agent.pending() == 0
    })
    .await;

    // NATS goes away for ~10 s while records keep coming.
    server.stop();
    let down = std::time::Instant::now();
    agent.produce(9_000);
    assert!(
        agent.pending() >= 3_000,
        "records pile up in the spool while NATS is down"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    assert!(
        !sink.stats().connected || sink.stats().errors > 0,
        "{:?}",
        sink.stats()
    );
    let mut server = NatsServer::start(port, &store, &[]);
    let restarted = std::time::Instant::now();
    let backlog = agent.pending() + (N - agent.sealer.next_seq() + 1);
    agent.produce(N);
    wait_until(
        "the spool drained after the outage",
        Duration::from_secs(90),
        || agent.pending() == 0,
    )
    .await;
    let drain = restarted.elapsed();
    eprintln!(
        "drained {backlog} records after the restart in {drain:?} (incl. reconnect): {:.0} records/s",
        backlog as f64 / drain.as_secs_f64()
    );
    let stats = sink.shutdown(Duration::from_secs(10)).await;
    eprintln!("sink stats: {stats:?}");
    assert!(stats.errors > 0, "the outage was noticed: {stats:?}");
    assert!(
        stats.batches > 0 && stats.ack_latency_max_us > 0,
        "{stats:?}"
    );

    // Exactly seq 1..=N for the host, nothing twice, alerts copied once.
    let client = connect(&cfg).await.unwrap();
    let js = jetstream(&cfg, client);
    let mut stream = ensure_stream(&js, &cfg).await.unwrap();
    let info = stream.info().await.unwrap();
    let alerts = alerts_before_crash + agent.alerts;
    let report = run_verify(VerifyArgs {
        source: VerifySource::Stream {
            nats: Box::new(cfg.clone()),
            subject: Some("debugmon.audit.>".into()),
        },
        trust: Trust::FirstUse,
        now_ns: None,
    })
    .await
    .unwrap();
    assert!(report.ok(), "{report}");
    let host = &report.hosts["machine-1"];
    assert_eq!(
        (host.records, host.first_seq, host.last_seq),
        (N, Some(1), Some(N)),
        "{report}"
    );
    assert!(alerts > 0);
    // Every seq that is a multiple of 97 is a denial: its alert copy is in
    // the stream once, next to the N audit messages verified above.
    assert_eq!(info.state.messages, N + alerts, "{info:?}");
    server.stop();
}

#[tokio::test]
async fn verify_reports_tampering_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut sealer = Sealer::open(&dir.path().join("state"), &dir.path().join("key")).unwrap();
    let pk = sealer.public_key_hex();
    let mut lines: Vec<String> = vec![
        String::from_utf8(
            sealer
                .seal(record(
                    "agent",
                    0,
                    json!({"event": "started", "public_key": pk}),
                ))
                .unwrap()
                .line,
        )
        .unwrap(),
    ];
    for i in 1..20 {
        let line = sealer
            .seal(record("exec", i, json!({"argv_bytes": i})))
            .unwrap()
            .line;
        lines.push(String::from_utf8(line).unwrap());
    }
    let verify = |lines: Vec<String>, name: &'static str| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.concat()).unwrap();
        run_verify(VerifyArgs {
            source: VerifySource::File(path),
            trust: Trust::Pinned(vec![pk.clone()]),
            now_ns: None,
        })
    };
    assert!(verify(lines.clone(), "intact").await.unwrap().ok());

    let mut edited = lines.clone();
    edited[5] = edited[5].replace("\"argv_bytes\":5", "\"argv_bytes\":50");
    let r = verify(edited, "edited").await.unwrap();
    assert!(!r.ok());
    assert_eq!(
        r.hosts["machine-1"].problems[0],
        Problem::HashMismatch { seq: 6 },
        "{r}"
    );

    let mut deleted = lines.clone();
    deleted.remove(10);
    let r = verify(deleted, "deleted").await.unwrap();
    assert_eq!(
        r.hosts["machine-1"].problems,
        vec![Problem::Gap { from: 11, to: 11 }],
        "{r}"
    );

    let mut swapped = lines.clone();
    swapped.swap(14, 15);
    let r = verify(swapped, "swapped").await.unwrap();
    assert_eq!(
        r.hosts["machine-1"].problems,
        vec![Problem::Reordered { seq: 15, after: 16 }],
        "{r}"
    );
    assert!(
        r.to_string()
            .contains("reordered: seq 15 came after seq 16"),
        "{r}"
    );

    let missing = run_verify(VerifyArgs {
        source: VerifySource::File(dir.path().join("nope")),
        trust: Trust::FirstUse,
        now_ns: None,
    })
    .await
    .unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[tokio::test]
async fn tls_needs_the_right_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server_cert, server_key) = support::tls_files(dir.path(), "right");
    let (wrong_ca, _, _) = support::tls_files(dir.path(), "wrong");
    let port = free_port();
    let cert = server_cert.to_str().unwrap();
    let key = server_key.to_str().unwrap();
    let mut server = NatsServer::start(
        port,
        &dir.path().join("js"),
        &["--tls", "--tlscert", cert, "--tlskey", key],
    );
    let tls_cfg = |ca: &Path| NatsConfig {
        tls: TlsConfig {
            ca_file: Some(ca.to_owned()),
            require: true,
            ..TlsConfig::default()
        },
        ..nats_cfg(port)
    };
    let client = connect(&tls_cfg(&ca)).await.unwrap();
    client.flush().await.unwrap();
    let js = jetstream(&tls_cfg(&ca), client);
    ensure_stream(&js, &NatsConfig::default()).await.unwrap();

    let err = connect(&tls_cfg(&wrong_ca)).await.unwrap_err();
    let chain = error_chain(&err);
    eprintln!("wrong CA: {chain}");
    assert!(chain.contains("127.0.0.1"), "names the server: {chain}");
    assert!(
        chain.to_lowercase().contains("certificate"),
        "says why: {chain}"
    );
    // Plain text to a TLS-only server is refused too.
    let mut plain = nats_cfg(port);
    plain.connect_timeout_ms = 2_000;
    assert!(connect(&plain).await.is_err());
    server.stop();
}

/// Records `tail` prints for `args` (JSON lines), up to `limit`.
async fn tail_json(args: TailArgs, limit: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let args = TailArgs {
        since: Some("1d".into()),
        json: true,
        limit: Some(limit),
        ..args
    };
    let n = tokio::time::timeout(
        Duration::from_secs(30),
        run_tail(&args, &mut out, std::future::pending()),
    )
    .await
    .expect("tail returned within 30 s")
    .unwrap();
    assert_eq!(n, limit);
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_prefix_moves_every_subject_and_a_stream_without_them_is_named() {
    const N: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = NatsServer::start(port, &dir.path().join("js"), &[]);
    let mut cfg = nats_cfg(port);
    cfg.subject_prefix = "acme.dm".into();
    cfg.stream.name = "ACME".into();

    let mut agent = Agent::start(dir.path());
    let sink = NatsSink::spawn(cfg.clone(), agent.spool.clone(), agent.tip());
    agent.produce(N);
    wait_until("the spool drained", Duration::from_secs(60), || {
        agent.pending() == 0
    })
    .await;
    // A publish that failed under load (an ack timeout) is retried: what
    // must hold is the stream's content, checked below, not zero errors.
    let stats = sink.shutdown(Duration::from_secs(10)).await;
    assert!(stats.acked >= N, "{stats:?}");

    // The stream the sink created takes the prefixed subjects only, and
    // holds every record once plus one alert copy per denial.
    let client = connect(&cfg).await.unwrap();
    let js = jetstream(&cfg, client);
    let mut stream = ensure_stream(&js, &cfg).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.config.subjects,
        ["acme.dm.audit.>", "acme.dm.alert.>"],
        "{info:?}"
    );
    assert!(agent.alerts > 0);
    assert_eq!(info.state.messages, N + agent.alerts, "{info:?}");

    let report = run_verify(VerifyArgs {
        source: VerifySource::Stream {
            nats: Box::new(cfg.clone()),
            // Not given: every record under the prefix.
            subject: None,
        },
        trust: Trust::FirstUse,
        now_ns: None,
    })
    .await
    .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.hosts["machine-1"].records, N, "{report}");

    // tail follows the prefix, for every record and for the alerts.
    let base = TailArgs {
        nats: cfg.clone(),
        ..TailArgs::default()
    };
    let all = tail_json(base.clone(), N).await;
    assert_eq!(all.last().unwrap()["seq"], N);
    let alerts = tail_json(
        TailArgs {
            alerts: true,
            ..base
        },
        agent.alerts,
    )
    .await;
    assert!(alerts.iter().all(|r| r["decision"]["action"] == "deny"));

    // An agent with another prefix refuses the stream, and says how to fix it.
    let mut other = cfg.clone();
    other.subject_prefix = "debugmon".into();
    let err = ensure_stream(&js, &other).await.unwrap_err();
    assert!(matches!(err, NatsError::Subjects { .. }), "{err:?}");
    let msg = err.to_string();
    for part in [
        "ACME",
        "acme.dm.audit.>",
        "debugmon.audit.*.*",
        "nats.subject_prefix",
        // The whole list to set, the stream's own subjects kept.
        "--subjects 'acme.dm.audit.>,acme.dm.alert.>,debugmon.audit.*.*,debugmon.alert.*.*'",
    ] {
        assert!(msg.contains(part), "names {part}: {msg}");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_silent_between_heartbeats_is_named_by_verify_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = NatsServer::start(port, &dir.path().join("js"), &[]);
    let cfg = nats_cfg(port);

    // Heartbeats every second for 5 s, nothing for 35 s (a frozen agent),
    // then heartbeats again: seqs 1 (start), 2..=6, 7..=9.
    let mut agent = Agent::start(dir.path());
    let mut times = Vec::new();
    for t in [1, 2, 3, 4, 5, 40, 41, 42] {
        let mut m = record(
            "agent",
            t,
            json!({"event": "heartbeat", "interval_s": 1, "uptime_s": t, "events": 0,
                "records": t + 1, "lost": 0}),
        );
        let time = format!("2026-01-01T00:00:{t:02}.000000000Z");
        m.insert("time".into(), Value::from(time.clone()));
        m.insert("monotonic_ns".into(), Value::from(t * 1_000_000_000));
        let sealed = agent.sealer.seal(m).unwrap();
        assert_eq!(sealed.severity, None, "a heartbeat is not an alert");
        agent.spool.append_batch(&[sealed]).unwrap();
        times.push(time);
    }
    let sink = NatsSink::spawn(cfg.clone(), agent.spool.clone(), agent.tip());
    wait_until("the spool drained", Duration::from_secs(60), || {
        agent.pending() == 0
    })
    .await;
    sink.shutdown(Duration::from_secs(10)).await;

    let report = run_verify(VerifyArgs {
        source: VerifySource::Stream {
            nats: Box::new(cfg.clone()),
            subject: None,
        },
        trust: Trust::FirstUse,
        now_ns: None,
    })
    .await
    .unwrap();
    assert!(!report.ok(), "{report}");
    let host = &report.hosts["machine-1"];
    assert_eq!(
        host.problems,
        [Problem::Silent {
            from: 6,
            to: 7,
            seconds: 35,
            interval_s: 1
        }],
        "{report}"
    );
    assert_eq!(host.last_heartbeat.as_ref().map(|b| b.seq), Some(9));

    // review reads the stream through the same reader: every record
    // verified, and the host's summary row names the silence.
    let source = VerifySource::Stream {
        nats: Box::new(cfg.clone()),
        subject: None,
    };
    let review = Review::new(Trust::FirstUse, None).unwrap();
    let reviewed = read_source(source, review).await.unwrap().finish();
    assert_eq!(reviewed.entries.len(), 9);
    assert!(reviewed.entries.iter().all(|e| e.status.ok()));
    let hosts = render(
        &reviewed,
        &Filter::default(),
        Some(Summary::Hosts),
        false,
        Format::Json,
    );
    let row: Value = serde_json::from_str(hosts.trim()).unwrap();
    assert_eq!(row["chain"], "ok", "{row}");
    let silent = row["silent"][0].as_str().unwrap();
    assert!(
        silent.contains("silent for 35s between seq 6 and seq 7"),
        "{row}"
    );

    // tail replays the stream, then hears nothing: after 3 intervals (on
    // its own clock) it names the host once, with its last record's time.
    let mut out = Vec::new();
    let args = TailArgs {
        nats: cfg.clone(),
        since: Some("1d".into()),
        json: true,
        ..TailArgs::default()
    };
    let printed = run_tail(&args, &mut out, tokio::time::sleep(Duration::from_secs(7)))
        .await
        .unwrap();
    assert_eq!(printed, 9);
    let lines: Vec<Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let silent: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("silent_host").is_some())
        .collect();
    assert_eq!(silent.len(), 1, "{lines:#?}");
    assert_eq!(silent[0]["silent_host"], "test-host.example");
    assert_eq!(silent[0]["last"], times.last().unwrap().as_str());
    let seconds = silent[0]["seconds"].as_u64().unwrap();
    assert!((3..=7).contains(&seconds), "{seconds}");
    assert_eq!(lines.last(), Some(silent[0]), "after the records");
    server.stop();
}
