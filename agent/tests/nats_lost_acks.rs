//! Against a real nats-server: a batch whose acks never come (what a
//! stream leader killed with publishes in flight leaves behind) fails as a
//! whole within about one ack timeout, and the sink then delivers every
//! record once. Awaiting the acks one after another made such a batch of
//! N records stall for N timeouts while the spool grew.

#[allow(dead_code, reason = "the TLS helpers are for other suites")]
mod support;

use std::{path::Path, time::Duration};

use agent::{
    record::seal::Sealer,
    sink::nats::{NatsConfig, NatsSink, connect, ensure_stream, jetstream},
    spool::{SharedSpool, Spool, SpoolConfig},
};
use futures::StreamExt as _;
use serde_json::json;
use support::{NatsServer, free_port, wait_until};

/// Records in the batch whose acks are lost; at one ack timeout each, one
/// after another, they would take this many seconds.
const N: u64 = 200;

fn seal_into(sealer: &mut Sealer, spool: &SharedSpool, from: u64, to: u64) {
    let batch: Vec<_> = (from..=to)
        .map(|i| {
            let rec = json!({
                "schema": 1,
                "time": "2026-01-01T00:00:00.000000000Z",
                "monotonic_ns": i,
                "host": {"name": "acks-host", "id": "machine-acks", "boot_id": "boot-1"},
                "kind": "exec",
                "detail": {"argv_bytes": i},
            });
            let serde_json::Value::Object(m) = rec else {
                unreachable!("a json! object")
            };
            sealer.seal(m).unwrap()
        })
        .collect();
    spool.append_batch(&batch).unwrap();
}

fn open(dir: &Path) -> (Sealer, SharedSpool) {
    let spool = Spool::open(&SpoolConfig {
        dir: dir.join("spool"),
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
    })
    .unwrap();
    let sealer = Sealer::open_with_tip(
        &dir.join("state"),
        &dir.join("host.key"),
        spool.last_appended(),
    )
    .unwrap();
    (sealer, SharedSpool::new(spool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_acks_are_lost_fails_within_one_timeout_and_is_delivered_after() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = NatsServer::start(port, &dir.path().join("jetstream"), &[]);
    let cfg = NatsConfig {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        ack_timeout_ms: 1_000,
        connect_timeout_ms: 1_000,
        backoff_min_ms: 50,
        backoff_max_ms: 200,
        batch: 256,
        ..NatsConfig::default()
    };
    let (mut sealer, spool) = open(dir.path());
    let sink = NatsSink::spawn(cfg.clone(), spool.clone(), 0);
    seal_into(&mut sealer, &spool, 1, 1);
    wait_until("the first record acked", Duration::from_secs(30), || {
        sink.stats().acked == 1
    })
    .await;

    // The stream goes, and a plain subscriber that never answers takes its
    // subjects: every publish now reaches a responder and waits for an
    // ack that does not come (no "no responders" to fail it early).
    let client = connect(&cfg).await.unwrap();
    let js = jetstream(&cfg, client.clone());
    js.delete_stream(&cfg.stream.name).await.unwrap();
    let mut silent = client.subscribe("debugmon.audit.>").await.unwrap();
    client.flush().await.unwrap();
    let errors_before = sink.stats().errors;
    seal_into(&mut sealer, &spool, 2, N + 1);
    // The whole batch went out, unanswered...
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(30), silent.next())
            .await
            .expect("the sink publishes the batch")
            .expect("subscription open");
    }
    // ...and fails together: about one ack timeout, not N of them. The
    // bound is a liveness check with room for a slow machine (N timeouts
    // would be 200 s).
    wait_until(
        "the unanswered batch counted as failed",
        Duration::from_secs(30),
        || sink.stats().errors > errors_before,
    )
    .await;
    drop(silent);

    // After the failure the sink opens the stream again (creating it) and
    // delivers the batch.
    wait_until("the spool drained", Duration::from_secs(60), || {
        spool.lock().stats().pending == 0
    })
    .await;
    let stats = sink.shutdown(Duration::from_secs(5)).await;
    let mut stream = ensure_stream(&js, &cfg).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        (info.state.first_sequence, info.state.messages),
        (1, N),
        "the recreated stream holds the batch once: {info:?} {stats:?}"
    );
    server.stop();
}
