//! The fleet layout of docs/nats.md against a real nats-server: TLS with a
//! throwaway CA, one account, an operator that creates the stream, an
//! agent user that may publish only under its own host's subjects (and ask
//! for the stream's info), with replies only on its own inbox, and a
//! reader that may read and not publish. The agent's sink delivers inside
//! it; publishing as another host, or reading, is refused to the agent;
//! publishing is refused to the reader. Grant approvals: the agent
//! publishes requests and reads its own approvals, and may not approve.

mod support;

use std::{path::Path, time::Duration};

use agent::{
    cli::verify::{VerifyArgs, VerifySource, run_verify},
    config::agent_inbox,
    record::{seal::Sealer, verify::trust::Trust},
    runtime::approvals::{approvals_consumer, ensure_grants_stream},
    sink::nats::{NatsAuth, NatsConfig, NatsSink, TlsConfig, connect, ensure_stream, jetstream},
    spool::{SharedSpool, Spool, SpoolConfig},
};
use serde_json::{Map, Value, json};
use support::{NatsServer, free_port, wait_until};

/// The server config of docs/nats.md, for one agent host (`db-1`).
fn server_conf(cert: &Path, key: &Path) -> String {
    format!(
        r#"
tls {{
  cert_file: "{cert}"
  key_file: "{key}"
}}
accounts {{
  DEBUGMON {{
    jetstream: enabled
    users: [
      {{ user: "operator", password: "operator-pw" }}
      {{ user: "agent-db-1", password: "agent-pw",
        permissions: {{
          publish: {{ allow: ["debugmon.audit.db-1.>", "debugmon.alert.db-1.>",
                              "$JS.API.STREAM.INFO.DEBUGMON",
                              "debugmon.grants.request.db-1",
                              "$JS.API.STREAM.INFO.DEBUGMON_GRANTS",
                              "$JS.API.CONSUMER.INFO.DEBUGMON_GRANTS.approvals-db-1",
                              "$JS.API.CONSUMER.CREATE.DEBUGMON_GRANTS.approvals-db-1.debugmon.grants.approval.db-1",
                              "$JS.API.CONSUMER.MSG.NEXT.DEBUGMON_GRANTS.approvals-db-1",
                              "$JS.ACK.DEBUGMON_GRANTS.approvals-db-1.>"] }}
          subscribe: {{ allow: ["_INBOX.db-1.>"] }}
        }} }}
      {{ user: "approver", password: "approver-pw",
        permissions: {{
          publish: {{ allow: ["debugmon.grants.approval.*", "$JS.API.INFO",
                              "$JS.API.STREAM.INFO.DEBUGMON_GRANTS",
                              "$JS.API.CONSUMER.CREATE.DEBUGMON_GRANTS", "$JS.API.CONSUMER.CREATE.DEBUGMON_GRANTS.>",
                              "$JS.API.CONSUMER.MSG.NEXT.DEBUGMON_GRANTS.>", "$JS.API.CONSUMER.INFO.DEBUGMON_GRANTS.>",
                              "$JS.API.CONSUMER.DELETE.DEBUGMON_GRANTS.>", "$JS.ACK.DEBUGMON_GRANTS.>",
                              "$JS.FC.DEBUGMON_GRANTS.>"] }}
          subscribe: {{ allow: ["_INBOX.>"] }}
        }} }}
      {{ user: "reader", password: "reader-pw",
        permissions: {{
          publish: {{ allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.DEBUGMON",
                              "$JS.API.CONSUMER.CREATE.DEBUGMON", "$JS.API.CONSUMER.CREATE.DEBUGMON.>",
                              "$JS.API.CONSUMER.MSG.NEXT.DEBUGMON.>", "$JS.API.CONSUMER.INFO.DEBUGMON.>",
                              "$JS.API.CONSUMER.DELETE.DEBUGMON.>", "$JS.API.STREAM.MSG.GET.DEBUGMON",
                              "$JS.ACK.DEBUGMON.>", "$JS.FC.DEBUGMON.>"] }}
          subscribe: {{ allow: ["_INBOX.>"] }}
        }} }}
    ]
  }}
}}
"#,
        cert = cert.display(),
        key = key.display()
    )
}

fn user_cfg(port: u16, ca: &Path, user: &str, password: &str) -> NatsConfig {
    NatsConfig {
        urls: vec![format!("nats://127.0.0.1:{port}")],
        tls: TlsConfig {
            ca_file: Some(ca.to_owned()),
            require: true,
            ..TlsConfig::default()
        },
        auth: NatsAuth::UserPassword {
            user: user.into(),
            password: password.into(),
        },
        ack_timeout_ms: 1_500,
        connect_timeout_ms: 2_000,
        backoff_min_ms: 50,
        backoff_max_ms: 500,
        ..NatsConfig::default()
    }
}

fn record(kind: &str, i: u64) -> Map<String, Value> {
    match json!({
        "schema": 1,
        "time": "2026-01-01T00:00:00.000000000Z",
        "monotonic_ns": i,
        "host": {"name": "db-1", "id": "machine-db-1", "boot_id": "boot-1"},
        "kind": kind,
        "detail": {"i": i},
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_agent_publishes_only_as_itself_and_reads_nothing_readers_only_read() {
    const N: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = support::tls_files(dir.path(), "fleet");
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, server_conf(&cert, &key)).unwrap();
    let port = free_port();
    let mut server = NatsServer::start(
        port,
        &dir.path().join("js"),
        &["-c", conf.to_str().unwrap()],
    );

    // The operator creates the stream (with deny_delete and deny_purge).
    let operator = user_cfg(port, &ca, "operator", "operator-pw");
    let js = jetstream(&operator, connect(&operator).await.unwrap());
    let info = ensure_stream(&js, &operator)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert!(info.config.deny_delete && info.config.deny_purge);

    // The agent's sink delivers N sealed records as agent-db-1.
    let mut agent = user_cfg(port, &ca, "agent-db-1", "agent-pw");
    agent.inbox_prefix = Some(agent_inbox("db-1"));
    let spool = Spool::open(&SpoolConfig {
        dir: dir.path().join("spool"),
        max_bytes: 1 << 26,
        segment_bytes: 1 << 20,
    })
    .unwrap();
    let mut sealer = Sealer::open(&dir.path().join("state"), &dir.path().join("host.key")).unwrap();
    let pk = sealer.public_key_hex();
    let mut start = record("agent", 0);
    start.insert(
        "detail".into(),
        json!({"event": "started", "public_key": pk}),
    );
    let mut sealed = vec![sealer.seal(start).unwrap()];
    for i in 1..N {
        sealed.push(sealer.seal(record("exec", i)).unwrap());
    }
    let spool = SharedSpool::new(spool);
    spool.append_batch(&sealed).unwrap();
    let sink = NatsSink::spawn(agent.clone(), spool.clone(), 0);
    wait_until("the agent's records acked", Duration::from_secs(30), || {
        spool.lock().stats().pending == 0
    })
    .await;
    let stats = sink.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats.acked, stats.collisions), (N, 0), "{stats:?}");

    // The agent may not publish as another host, nor read. A refusal
    // shows as a timeout, so the refusals are waited for together.
    let client = connect(&agent).await.unwrap();
    let ajs = jetstream(&agent, client.clone());
    let stream = ajs.get_stream_no_info("DEBUGMON").await.unwrap();
    let mut sub = client.subscribe("debugmon.>").await.unwrap();
    client.flush().await.unwrap();
    let (other, read, purge, peek) = tokio::join!(
        async {
            ajs.publish("debugmon.audit.db-2.exec", "{}".into())
                .await
                .unwrap()
                .await
        },
        stream.get_raw_message(1),
        async { stream.purge().await },
        tokio::time::timeout(Duration::from_millis(500), async {
            use futures::StreamExt as _;
            sub.next().await
        }),
    );
    assert!(other.is_err(), "published as db-2: {other:?}");
    assert!(read.is_err(), "the agent read a record: {read:?}");
    assert!(purge.is_err(), "the agent purged: {purge:?}");
    assert!(!matches!(peek, Ok(Some(_))), "the agent saw a message");

    // The reader verifies the stream, with the agent's key pinned.
    let reader = user_cfg(port, &ca, "reader", "reader-pw");
    let report = run_verify(VerifyArgs {
        source: VerifySource::Stream {
            nats: Box::new(reader.clone()),
            subject: None,
        },
        trust: Trust::Pinned(vec![pk]),
        now_ns: None,
    })
    .await
    .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.hosts["machine-db-1"].records, N);
    // The same read the agent was refused works for the reader: the
    // refusal above was the permissions, not the call.
    let rjs = jetstream(&reader, connect(&reader).await.unwrap());
    let first = rjs
        .get_stream_no_info("DEBUGMON")
        .await
        .unwrap()
        .get_raw_message(1)
        .await;
    assert!(first.is_ok(), "the reader could not read: {first:?}");
    // ... and may not publish.
    let forged = rjs
        .publish("debugmon.audit.db-1.exec", "{}".into())
        .await
        .unwrap()
        .await;
    assert!(forged.is_err(), "the reader published: {forged:?}");
    let after = js
        .get_stream("DEBUGMON")
        .await
        .unwrap()
        .cached_info()
        .state
        .messages;
    assert_eq!(after, N, "nothing but the agent's records in the stream");
    approvals_only_approvers_approve(port, &ca, &js).await;
    server.stop();
}

/// Grant requests and approvals (docs/nats.md): the agent publishes its
/// requests and reads its own approvals with the documented permissions;
/// it may not approve, nor read another host's approvals; the approver
/// may approve.
async fn approvals_only_approvers_approve(
    port: u16,
    ca: &Path,
    operator: &async_nats::jetstream::Context,
) {
    use futures::StreamExt as _;
    let mut agent = user_cfg(port, ca, "agent-db-1", "agent-pw");
    agent.inbox_prefix = Some(agent_inbox("db-1"));
    let op = user_cfg(port, ca, "operator", "operator-pw");
    ensure_grants_stream(operator, &op).await.unwrap();
    let ajs = jetstream(&agent, connect(&agent).await.unwrap());
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let consumer = approvals_consumer(&ajs, &agent, "db-1", since)
        .await
        .unwrap();
    let req = ajs
        .publish("debugmon.grants.request.db-1", "{}".into())
        .await
        .unwrap()
        .await;
    assert!(req.is_ok(), "the agent's request: {req:?}");
    // Refusals time out: waited for together.
    let forge = |subject: &'static str| {
        let ajs = ajs.clone();
        async move {
            (
                subject,
                ajs.publish(subject, "{}".into()).await.unwrap().await,
            )
        }
    };
    let (own, other_host, other) = tokio::join!(
        forge("debugmon.grants.approval.db-1"),
        forge("debugmon.grants.approval.db-2"),
        approvals_consumer(&ajs, &agent, "db-2", since),
    );
    for (subject, forged) in [own, other_host] {
        assert!(
            forged.is_err(),
            "the agent approved on {subject}: {forged:?}"
        );
    }
    assert!(other.is_err(), "the agent read db-2's approvals");
    let approver = user_cfg(port, ca, "approver", "approver-pw");
    let pjs = jetstream(&approver, connect(&approver).await.unwrap());
    let ok = pjs
        .publish("debugmon.grants.approval.db-1", "{\"a\":1}".into())
        .await
        .unwrap()
        .await;
    assert!(ok.is_ok(), "the approver's approval: {ok:?}");
    let mut messages = consumer.messages().await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("the agent receives its approval")
        .expect("a message")
        .unwrap();
    assert_eq!(&msg.payload[..], b"{\"a\":1}");
    msg.ack().await.unwrap();
}
