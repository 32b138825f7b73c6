//! NATS JetStream: the sink that ships spooled records ([`NatsSink`]), the
//! connection settings and stream shared with `verify` and `tail`
//! (`connect`), and reading the stream back ([`read`]).
//!
//! The sink is a background task: it peeks the oldest durable spool
//! entries, publishes each to
//! `<prefix>.audit.<host>.<kind>` (and alerts/denials also to
//! `<prefix>.alert.<host>.<severity>`; the prefix is `debugmon` unless
//! `nats.subject_prefix` says otherwise) with `Nats-Msg-Id = <hash>` (the
//! record's seal; `<hash>:alert` for the copy), awaits the acks of the
//! whole batch, and only then acks the spool. A retry after a lost ack or
//! a crash republishes the same ids, which the server de-duplicates. The
//! id cannot be predicted by another publisher, and one taken anyway is
//! detected ([`publish`]).
//!
//! Acks are awaited per bounded batch: holding thousands of unawaited ack
//! futures stalls the publisher (docs/toolchain.md). While NATS is
//! unreachable the task retries with exponential backoff and the spool
//! grows; on reconnect it drains in order.

mod connect;
mod publish;
pub mod read;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

pub use connect::{
    DEFAULT_SUBJECT_PREFIX, NatsAuth, NatsConfig, NatsError, PREFIX_RULE, StreamSettings,
    TlsConfig, connect, covers, ensure_stream, jetstream, valid_prefix,
};
use serde::Deserialize;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

use self::publish::{Ids, publish_batch};
use crate::{error::error_chain, record::alert::severity_of, spool::SharedSpool};

/// A subject token from a free-form name: NATS tokens cannot hold `.`,
/// `*`, `>` or whitespace.
pub fn subject_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if t.is_empty() {
        "unknown".to_owned()
    } else {
        t
    }
}

#[derive(Deserialize)]
struct HostMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct DecisionMeta {
    action: Option<String>,
    severity: Option<String>,
}

#[derive(Deserialize)]
struct Meta {
    hash: String,
    kind: String,
    host: HostMeta,
    decision: Option<DecisionMeta>,
}

/// Subjects and ids of one record.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub audit_subject: String,
    pub msg_id: String,
    /// Subject and id of the alert copy.
    pub alert: Option<(String, String)>,
}

/// Where a sealed line goes under subject prefix `prefix`; `None` for a
/// line that is not a sealed record. The message id is the record's
/// `hash`: unique per record, and unknown to anyone before the agent
/// sealed it, so no other publisher can claim it in advance.
pub fn route(line: &[u8], prefix: &str) -> Option<Route> {
    let m: Meta = serde_json::from_slice(line).ok()?;
    let host = subject_token(if m.host.name.is_empty() {
        &m.host.id
    } else {
        &m.host.name
    });
    if m.hash.len() != 64 || !m.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let msg_id = m.hash;
    let severity = m
        .decision
        .and_then(|d| severity_of(d.severity.as_deref(), d.action.as_deref()));
    Some(Route {
        audit_subject: format!("{prefix}.audit.{host}.{}", subject_token(&m.kind)),
        alert: severity.map(|s| {
            (
                format!("{prefix}.alert.{host}.{}", subject_token(&s)),
                format!("{msg_id}:alert"),
            )
        }),
        msg_id,
    })
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    acked: AtomicU64,
    duplicates: AtomicU64,
    collisions: AtomicU64,
    errors: AtomicU64,
    invalid: AtomicU64,
    connected: AtomicBool,
    batches: AtomicU64,
    ack_latency_last_us: AtomicU64,
    ack_latency_max_us: AtomicU64,
    ack_latency_total_us: AtomicU64,
}

/// A snapshot of the sink's counters (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsStats {
    /// Messages sent (audit and alert copies), retries included.
    pub published: u64,
    /// Records acked by JetStream and released from the spool.
    pub acked: u64,
    /// Acks the server flagged as duplicates (retries it had already stored).
    pub duplicates: u64,
    /// Records whose message id someone else had used first (each then
    /// published again under a fresh id).
    pub collisions: u64,
    /// Connect, publish and ack failures.
    pub errors: u64,
    /// Spool entries that were not records (dropped, counted).
    pub invalid: u64,
    pub connected: bool,
    /// Acked batches, and the time from a batch's first publish to its last ack.
    pub batches: u64,
    pub ack_latency_last_us: u64,
    pub ack_latency_max_us: u64,
    pub ack_latency_total_us: u64,
}

impl Counters {
    fn snapshot(&self) -> NatsStats {
        NatsStats {
            published: self.published.load(Relaxed),
            acked: self.acked.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            collisions: self.collisions.load(Relaxed),
            errors: self.errors.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            connected: self.connected.load(Relaxed),
            batches: self.batches.load(Relaxed),
            ack_latency_last_us: self.ack_latency_last_us.load(Relaxed),
            ack_latency_max_us: self.ack_latency_max_us.load(Relaxed),
            ack_latency_total_us: self.ack_latency_total_us.load(Relaxed),
        }
    }
}

/// The running sink task.
#[derive(Debug)]
pub struct NatsHandle {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
}

impl NatsHandle {
    pub fn stats(&self) -> NatsStats {
        self.counters.snapshot()
    }

    /// Stops after publishing every flushed spool entry, or after `grace`
    /// (what is left stays in the spool for the next start).
    pub async fn shutdown(self, grace: Duration) -> NatsStats {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            warn!(
                grace_ms = grace.as_millis(),
                "NATS sink: grace period over, the rest stays spooled"
            );
            abort.abort();
        }
        self.counters.snapshot()
    }

    /// Stops at once without draining (entries stay spooled; unacked
    /// publishes are retried, de-duplicated, after the next start).
    pub fn abort(self) -> NatsStats {
        self.task.abort();
        self.counters.snapshot()
    }
}

/// Entry point: `NatsSink::spawn(cfg, spool, tip_at_start)`.
pub struct NatsSink;

impl NatsSink {
    /// Starts the background task on the current tokio runtime.
    /// `tip_at_start`: the last seq the spool held when this run opened it;
    /// entries up to there may have gone out before a crash, so a
    /// duplicate for them is a retry, not a collision.
    pub fn spawn(cfg: NatsConfig, spool: SharedSpool, tip_at_start: u64) -> NatsHandle {
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let ids = Ids::new(tip_at_start);
        let task = tokio::spawn(run(cfg, spool, ids, counters.clone(), stop_rx));
        NatsHandle {
            task,
            stop,
            counters,
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) {
    if !*stop.borrow() {
        let _ = tokio::time::timeout(d, stop.changed()).await;
    }
}

async fn run(
    cfg: NatsConfig,
    spool: SharedSpool,
    mut ids: Ids,
    c: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let min = Duration::from_millis(cfg.backoff_min_ms.max(1));
    let max = Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_min_ms).max(1));
    let mut backoff = min;
    // Connect (the client then reconnects by itself) and open the stream.
    let (client, js) = loop {
        match connect(&cfg).await {
            Ok(client) => {
                let js = jetstream(&cfg, client.clone());
                match ensure_stream(&js, &cfg).await {
                    Ok(_) => break (client, js),
                    Err(e) => warn!(error = %error_chain(&e), "NATS sink: stream not usable yet"),
                }
            }
            Err(e) => {
                warn!(error = %error_chain(&e), retry_ms = backoff.as_millis(), "NATS sink: cannot connect")
            }
        }
        c.errors.fetch_add(1, Relaxed);
        if *stop.borrow() {
            return;
        }
        sleep_or_stop(backoff, &mut stop).await;
        backoff = (backoff * 2).min(max);
    };
    info!(urls = %cfg.urls.join(","), stream = %cfg.stream.name, "NATS sink connected");
    backoff = min;
    loop {
        c.connected.store(
            client.connection_state() == async_nats::connection::State::Connected,
            Relaxed,
        );
        let peek = {
            let spool = spool.clone();
            let n = cfg.batch;
            tokio::task::spawn_blocking(move || spool.lock().peek(n)).await
        };
        let batch = match peek {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                warn!(error = %error_chain(&e), "NATS sink: reading the spool");
                c.errors.fetch_add(1, Relaxed);
                sleep_or_stop(max, &mut stop).await;
                continue;
            }
            Err(e) => {
                warn!(error = %e, "NATS sink: spool reader task failed");
                return;
            }
        };
        if batch.is_empty() {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                () = spool.wait_flushed(Duration::from_millis(200)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let (done_upto, failed) =
            publish_batch(&js, &cfg.subject_prefix, &batch, &mut ids, &c).await;
        if let Some(upto) = done_upto {
            let spool = spool.clone();
            match tokio::task::spawn_blocking(move || spool.lock().ack(upto)).await {
                Ok(Ok(n)) => {
                    c.acked.fetch_add(n, Relaxed);
                }
                Ok(Err(e)) => {
                    warn!(error = %error_chain(&e), "NATS sink: acking the spool");
                    c.errors.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    warn!(error = %e, "NATS sink: spool ack task failed");
                    return;
                }
            }
        }
        if failed {
            c.errors.fetch_add(1, Relaxed);
            if *stop.borrow()
                && client.connection_state() != async_nats::connection::State::Connected
            {
                // Shutting down with NATS away: the spool keeps the rest.
                return;
            }
            sleep_or_stop(backoff, &mut stop).await;
            backoff = (backoff * 2).min(max);
            // The stream may have been deleted or the server replaced, or
            // edited so that it no longer takes our subjects.
            match ensure_stream(&js, &cfg).await {
                Err(e @ NatsError::Subjects { .. }) => {
                    warn!(error = %error_chain(&e), "NATS sink: stream not usable");
                }
                Err(e) => {
                    debug!(error = %error_chain(&e), "NATS sink: stream not reachable yet");
                }
                Ok(_) => {}
            }
        } else {
            backoff = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H7: &str = "7777777777777777777777777777777777777777777777777777777777777777";
    const H8: &str = "8888888888888888888888888888888888888888888888888888888888888888";

    #[test]
    fn routes_follow_the_design_subjects_and_ids_are_the_seal() {
        let line = format!(
            r#"{{"seq":7,"hash":"{H7}","kind":"exec","host":{{"name":"db-1.prod","id":"m","boot_id":"b"}}}}"#
        );
        assert_eq!(
            route(line.as_bytes(), "debugmon").unwrap(),
            Route {
                audit_subject: "debugmon.audit.db-1_prod.exec".into(),
                msg_id: H7.into(),
                alert: None,
            }
        );
        let line = format!(
            r#"{{"seq":8,"hash":"{H8}","kind":"ptrace","host":{{"name":"","id":"m","boot_id":"b"}},"decision":{{"action":"deny","severity":"critical"}}}}"#
        );
        let r = route(line.as_bytes(), "debugmon").unwrap();
        assert_eq!(r.audit_subject, "debugmon.audit.m.ptrace");
        assert_eq!(
            r.alert,
            Some(("debugmon.alert.m.critical".into(), format!("{H8}:alert")))
        );
        // Another prefix changes the subjects, not the ids.
        let r = route(line.as_bytes(), "acme.prod").unwrap();
        assert_eq!(r.audit_subject, "acme.prod.audit.m.ptrace");
        assert_eq!(
            r.alert,
            Some(("acme.prod.alert.m.critical".into(), format!("{H8}:alert")))
        );
        let line = format!(
            r#"{{"seq":9,"hash":"{H7}","kind":"ptrace","host":{{"name":"h"}},"decision":{{"action":"allow"}}}}"#
        );
        assert_eq!(route(line.as_bytes(), "debugmon").unwrap().alert, None);
        assert_eq!(route(b"not json", "debugmon"), None);
        assert_eq!(
            route(br#"{"kind":"exec"}"#, "debugmon"),
            None,
            "no seq/host: not a record"
        );
        // Unsealed, or a hash that is not one: no id to publish under.
        let unsealed = br#"{"seq":9,"kind":"exec","host":{"name":"h"}}"#;
        assert_eq!(route(unsealed, "debugmon"), None);
        let odd = br#"{"seq":9,"hash":"h:b:9","kind":"exec","host":{"name":"h"}}"#;
        assert_eq!(route(odd, "debugmon"), None);
    }

    #[test]
    fn a_stream_pattern_covers_our_subjects_only_if_it_matches_all_of_them() {
        assert!(covers("debugmon.audit.>", "debugmon.audit.>"));
        assert!(covers(">", "acme.audit.>"));
        assert!(covers("acme.>", "acme.audit.>"));
        assert!(covers("*.audit.>", "acme.audit.>"));
        assert!(!covers("debugmon.audit.>", "acme.audit.>"));
        assert!(!covers("acme.audit.*", "acme.audit.>"), "one token only");
        assert!(!covers("acme.audit.*.*", "acme.audit.>"));
        assert!(!covers("acme", "acme.audit.>"));
        assert!(!covers("acme.audit.>", "acme.audit"));
        // What an existing stream is checked against: one token each for
        // host and kind, so a tuned `*.*` stream is fine.
        assert!(covers("acme.audit.*.*", "acme.audit.*.*"));
        assert!(covers("acme.audit.>", "acme.audit.*.*"));
        assert!(!covers("acme.audit.*", "acme.audit.*.*"));
        assert!(!covers("acme.audit.db.*", "acme.audit.*.*"));
        assert!(valid_prefix("acme.prod") && valid_prefix(DEFAULT_SUBJECT_PREFIX));
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }

    #[test]
    fn subject_tokens_are_safe() {
        assert_eq!(subject_token("a.b c*>d"), "a_b_c__d");
        assert_eq!(subject_token(""), "unknown");
        assert_eq!(subject_token("web-01_x"), "web-01_x");
    }
}
