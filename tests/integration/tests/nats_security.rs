//! Delivery that security can rely on, against a real nats-server: a
//! publisher that pre-empts the agent's message ids (old-style
//! `host:boot_id:seq` ids, and the records' own seals read off the host)
//! does not make any record a dropped "duplicate"; and the stream the agent
//! creates refuses deleting or purging a record.

use std::time::{Duration, Instant};

use async_nats::{HeaderMap, jetstream};
use integration_test::{
    Agent, execs,
    nats::{Nats, free_port},
    nonce, require_root,
};
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The subject token the agent makes of a host name.
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every message in the stream, parsed (payloads that are not JSON as
/// strings).
async fn stream_messages(js: &jetstream::Context, name: &str) -> Vec<Value> {
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(
                serde_json::from_slice(&m.payload)
                    .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&m.payload))),
            );
        }
    }
    out
}

#[test]
fn a_publisher_that_takes_the_agents_message_ids_first_loses_no_record() {
    require_root();
    let dir = std::env::temp_dir().join(nonce("msgid"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    // NATS is down at first: the records wait in the spool while the
    // test reads them off stdout, as someone reading the host could.
    let agent = Agent::start_env(
        &[],
        &[
            ("DEBUGMON_NATS_ENABLED", "true"),
            ("DEBUGMON_NATS_URLS", url.as_str()),
            // Within a test machine's disk (JetStream refuses more).
            ("DEBUGMON_NATS_MAX_BYTES", "1GiB"),
            ("DEBUGMON_NATS_BACKOFF_MAX_MS", "500"),
        ],
    );
    let tag = nonce("pre");
    execs(&tag, 0..20);
    agent.barrier();
    let early = agent.matching(|_| true);
    let host = early[0]["host"].clone();
    let host_tok = token(host["name"].as_str().unwrap());
    let boot_id = host["boot_id"].as_str().unwrap().to_owned();
    let last_early = early.last().unwrap()["seq"].as_u64().unwrap();

    // The other publisher gets the server first, on a port the agent does
    // not know; the server then moves, store and all, to the agent's port.
    let mut nats = Nats::start(free_port(), &dir.join("js"));
    let rt = rt();
    let (taken_seals, taken_old) = rt.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: "DEBUGMON".into(),
            subjects: vec!["debugmon.audit.>".into(), "debugmon.alert.>".into()],
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut seals = 0u64;
        let mut old = 0u64;
        let publish = async |subject: String, id: String| {
            let mut h = HeaderMap::new();
            h.insert("Nats-Msg-Id", id.as_str());
            let ack = js
                .publish_with_headers(subject, h, r#"{"forged":true}"#.into())
                .await
                .unwrap()
                .await
                .unwrap();
            assert!(!ack.duplicate, "{id}");
        };
        // The id scheme of earlier versions, far ahead of the agent.
        for seq in 1..=last_early + 500 {
            publish(
                format!("debugmon.audit.{host_tok}.exec"),
                format!("{host_tok}:{boot_id}:{seq}"),
            )
            .await;
            old += 1;
        }
        // The seals themselves, as if leaked from the host's own output.
        for r in &early {
            let kind = r["kind"].as_str().unwrap();
            publish(
                format!("debugmon.audit.{host_tok}.{kind}"),
                r["hash"].as_str().unwrap().to_owned(),
            )
            .await;
            seals += 1;
        }
        (seals, old)
    });
    eprintln!("took {taken_old} old-style ids and {taken_seals} seals before the agent");
    nats.stop();
    nats.port = port;
    nats.restart();

    // More records once NATS is up, then wait for the whole chain.
    execs(&format!("{tag}-late"), 0..20);
    agent.barrier();
    let alert = agent.wait_for("the collision alert", Duration::from_secs(30), |r| {
        r["detail"]["event"] == "delivery_collision"
            && r["detail"]["cumulative"].as_u64() == Some(taken_seals)
    });
    assert_eq!(alert["decision"]["action"], "alert", "{alert:#}");
    assert_eq!(alert["decision"]["rule"], "nats-msg-id-collision");
    agent.barrier();
    let last = agent.matching(|_| true).last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ours, stream) = loop {
        let ours = agent.matching(|r| r["seq"].as_u64().is_some_and(|s| s <= last));
        let stream = rt.block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await.unwrap());
            stream_messages(&js, "DEBUGMON").await
        });
        let landed = ours.iter().filter(|r| stream.contains(r)).count();
        if landed == ours.len() {
            break (ours, stream);
        }
        assert!(
            Instant::now() < deadline,
            "{landed} of {} records in the stream",
            ours.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Every record of the agent, byte for byte (as JSON), is stored
    // beside what the other publisher put there.
    let forged = stream.iter().filter(|m| m["forged"] == true).count() as u64;
    assert_eq!(forged, taken_old + taken_seals);
    eprintln!(
        "{} records of the agent and {forged} forged messages in the stream",
        ours.len()
    );
    let st = agent.stop();
    st.assert_clean();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_stream_the_agent_creates_refuses_deleting_or_purging_records() {
    require_root();
    let dir = std::env::temp_dir().join(nonce("deny"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let nats = Nats::start(port, &dir.join("js"));
    let url = nats.url();
    let agent = Agent::start_env(
        &[],
        &[
            ("DEBUGMON_NATS_ENABLED", "true"),
            ("DEBUGMON_NATS_URLS", url.as_str()),
            // Within a test machine's disk (JetStream refuses more).
            ("DEBUGMON_NATS_MAX_BYTES", "1GiB"),
        ],
    );
    execs(&nonce("deny"), 0..5);
    agent.barrier();
    let rt = rt();
    rt.block_on(async {
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stream = loop {
            if let Ok(mut s) = js.get_stream("DEBUGMON").await
                && s.info().await.unwrap().state.messages >= 5
            {
                break s;
            }
            assert!(Instant::now() < deadline, "no records in the stream");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let info = stream.info().await.unwrap().clone();
        assert!(
            info.config.deny_delete && info.config.deny_purge,
            "{:?}",
            info.config
        );
        let before = info.state.messages;
        let first = info.state.first_sequence;
        let del = stream.delete_message(first).await;
        assert!(
            del.is_err(),
            "deleting message {first} was allowed: {del:?}"
        );
        eprintln!("delete refused: {}", del.unwrap_err());
        let purge = stream.purge().await;
        assert!(purge.is_err(), "purging the stream was allowed: {purge:?}");
        eprintln!("purge refused: {}", purge.unwrap_err());
        let after = stream.info().await.unwrap().state.messages;
        assert!(after >= before, "{after} < {before} messages");
        assert!(
            stream.get_raw_message(first).await.is_ok(),
            "message {first} gone"
        );
    });
    let st = agent.stop();
    st.assert_clean();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
