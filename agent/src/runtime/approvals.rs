//! The agent's side of fleet approvals on NATS (docs/review.md,
//! "Approvals"): publishes this host's signed grant requests on
//! `<prefix>.grants.request.<host>`, reads approvals for this host only
//! from `<prefix>.grants.approval.<host>` through a durable consumer (an
//! approval made while the agent was down is applied when it is back), and
//! installs the grant of each approval that passes
//! [`crate::grants::approval::check`] through the grants store, so it ends
//! in the kernel like any other. Every refusal is reported for a record.
//! The request is closed before its grant is made: a repeated approval
//! finds nothing open and installs nothing.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    message::PublishMessage,
    stream,
};
use ed25519_dalek::SigningKey;
use futures::StreamExt as _;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{Settings, governance::Effect};
use crate::{
    error::error_chain,
    event::Kind,
    grants::{
        Clock, GrantError, GrantStore, SystemClock,
        approval::{
            Approvers, Context, Refusal, SignedRequest, check,
            pending::{Dropped, PendingBook},
        },
        control::{Approvals, ControlEvent, Desk},
    },
    sink::nats::{NatsConfig, NatsError, connect, jetstream as js_context, subject_token},
};

/// How the host treats approvals (config `[grants]`).
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// `NAME:HEXKEY` per approver (`grants.approvers`).
    pub approvers: Approvers,
    /// The requester may not approve their own request.
    pub two_person: bool,
    /// How long a request waits for its approval.
    pub request_ttl: Duration,
    /// The open requests (`grants.requests_path`).
    pub requests_path: PathBuf,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            approvers: Approvers::default(),
            two_person: true,
            request_ttl: Duration::from_secs(3600),
            requests_path: PathBuf::from("/var/lib/debugmon/requests.json"),
        }
    }
}

/// The grants stream of a records stream `name`: requests and approvals
/// live apart from the records, which hosts alone write.
pub fn grants_stream(cfg: &NatsConfig) -> String {
    format!("{}_GRANTS", cfg.stream.name)
}

/// `<prefix>.grants.request.<host>`.
pub fn request_subject(prefix: &str, host: &str) -> String {
    format!("{prefix}.grants.request.{}", subject_token(host))
}

/// `<prefix>.grants.approval.<host>`.
pub fn approval_subject(prefix: &str, host: &str) -> String {
    format!("{prefix}.grants.approval.{}", subject_token(host))
}

/// Creates the grants stream when absent (file storage, nothing deleted
/// but by age), as the operator would (docs/nats.md).
pub async fn ensure_grants_stream(
    js: &jetstream::Context,
    cfg: &NatsConfig,
) -> Result<stream::Stream, NatsError> {
    let name = grants_stream(cfg);
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{}.grants.>", cfg.subject_prefix)],
        max_age: Duration::from_secs(cfg.stream.max_age_secs),
        duplicate_window: Duration::from_secs(cfg.stream.duplicate_window_secs),
        num_replicas: cfg.stream.replicas.max(1),
        storage: stream::StorageType::File,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    })
    .await
    .map_err(|e| NatsError::Stream {
        name,
        source: Box::new(e),
    })
}

/// The NATS side before the grants store and the event channel exist.
pub struct Opened {
    nats: NatsConfig,
    host: String,
    settings: ApprovalSettings,
    book: Arc<Mutex<PendingBook>>,
    outbox: mpsc::UnboundedReceiver<SignedRequest>,
}

impl Opened {
    pub fn into_bus(
        self,
        store: Arc<Mutex<GrantStore>>,
        events: mpsc::Sender<ControlEvent>,
    ) -> (Bus, mpsc::UnboundedReceiver<SignedRequest>) {
        let bus = Bus {
            nats: self.nats,
            host: self.host,
            settings: self.settings,
            book: self.book,
            store,
            clock: Arc::new(SystemClock),
            events,
        };
        (bus, self.outbox)
    }
}

/// The control socket's side, the NATS side (when approvals are on) and
/// the records of requests dropped from the file at start.
pub type Desks = (Arc<Approvals>, Option<Opened>, Vec<Effect>);

/// What the control socket does with `request` and, when approvals are on
/// (NATS and approver keys configured), the open requests and the records
/// of those dropped from the file at start.
pub fn open(cfg: &Settings, host: &str, key: &Arc<SigningKey>) -> Result<Desks, GrantError> {
    let Some(nats) = cfg.delivery.nats.clone() else {
        let why = "grant requests need NATS, on which approvals travel: set [nats] enabled = true (docs/review.md, \"Approvals\")";
        return Ok((Arc::new(Approvals::Off(why.to_owned())), None, Vec::new()));
    };
    let settings = cfg.approvals.clone();
    if settings.approvers.is_empty() {
        let why = "grant requests need approver keys: list them in [grants] approvers (docs/review.md, \"Approvals\")";
        return Ok((Arc::new(Approvals::Off(why.to_owned())), None, Vec::new()));
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (book, dropped) = PendingBook::open(
        &settings.requests_path,
        host,
        Arc::clone(key),
        settings.request_ttl,
        cfg.grants_max,
        clock.now(),
    )?;
    let effects = dropped.into_iter().map(dropped_record).collect();
    let book = Arc::new(Mutex::new(book));
    let (tx, outbox) = mpsc::unbounded_channel();
    let desk = Desk {
        book: Arc::clone(&book),
        clock,
        outbox: tx,
    };
    let opened = Opened {
        nats,
        host: host.to_owned(),
        settings,
        book,
        outbox,
    };
    Ok((Arc::new(Approvals::On(desk)), Some(opened), effects))
}

/// A request dropped from the file at start: expired, or not this host's
/// own (an alert: someone wrote the file).
fn dropped_record(d: Dropped) -> Effect {
    match d {
        Dropped::Expired(r) => Effect::Record {
            kind: Kind::Grant,
            detail: json!({"event": "request_expired", "request": r}),
        },
        Dropped::Forged { reason } => {
            tracing::error!(%reason, "grant requests file holds a request this host did not sign; dropped");
            Effect::Alert {
                kind: Kind::Grant,
                detail: json!({"event": "request_rejected", "reason": reason}),
                verdict: crate::decide::Verdict {
                    action: "alert",
                    enforced: None,
                    grant_id: None,
                    reason: Some(format!("grant requests file refused: {reason}")),
                    rule: Some("grant-requests-seal".to_owned()),
                    severity: Some("high".to_owned()),
                    tags: Vec::new(),
                },
            }
        }
    }
}

/// This host's durable consumer of its approvals (`approvals-<host>`,
/// filtered on its own approval subject), created when absent to start at
/// `since`; the grants stream is created when absent.
pub async fn approvals_consumer(
    js: &jetstream::Context,
    nats: &NatsConfig,
    host: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<jetstream::consumer::Consumer<pull::Config>, NatsError> {
    let stream = ensure_grants_stream(js, nats).await?;
    let name = grants_stream(nats);
    let durable = format!("approvals-{}", subject_token(host));
    let start_time = time::OffsetDateTime::from_unix_timestamp(since.timestamp())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: approval_subject(&nats.subject_prefix, host),
                deliver_policy: DeliverPolicy::ByStartTime { start_time },
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| stream_err(&name)(Box::new(e)))
}

/// What the NATS side works with.
pub struct Bus {
    pub nats: NatsConfig,
    pub host: String,
    pub settings: ApprovalSettings,
    pub book: Arc<Mutex<PendingBook>>,
    pub store: Arc<Mutex<GrantStore>>,
    pub clock: Arc<dyn Clock>,
    pub events: mpsc::Sender<ControlEvent>,
}

/// Runs until `stop` turns true: connects (again after a failure, with
/// backoff), publishes open requests, applies approvals.
pub async fn run(
    (bus, mut outbox): (Bus, mpsc::UnboundedReceiver<SignedRequest>),
    mut stop: watch::Receiver<bool>,
) {
    let min = Duration::from_millis(bus.nats.backoff_min_ms.max(1));
    let max = Duration::from_millis(bus.nats.backoff_max_ms.max(1));
    let mut backoff = min;
    loop {
        match session(&bus, &mut outbox, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), retry_in = ?backoff,
                    "grant approvals: NATS unavailable; requests stay open and are published on reconnect");
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        // Requests still end on time while NATS is away.
        for ev in expire(&bus) {
            let _ = bus.events.send(ev).await;
        }
        backoff = (backoff * 2).min(max);
    }
}

fn stream_err(name: &str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> NatsError {
    let name = name.to_owned();
    move |source| NatsError::Consumer { name, source }
}

async fn session(
    bus: &Bus,
    outbox: &mut mpsc::UnboundedReceiver<SignedRequest>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), NatsError> {
    let client = connect(&bus.nats).await?;
    let js = js_context(&bus.nats, client);
    let name = grants_stream(&bus.nats);
    // Approvals older than a request can live approve nothing: a new
    // consumer starts there, not at the stream's first message.
    let since = bus.clock.now()
        - chrono::Duration::from_std(bus.settings.request_ttl).unwrap_or(chrono::Duration::zero());
    let consumer = approvals_consumer(&js, &bus.nats, &bus.host, since).await?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| stream_err(&name)(Box::new(e)))?;
    // Requests made while NATS was away (or before a restart) go out now;
    // the message id keeps a repeat from being stored twice.
    let open = bus.book.lock().map(|b| b.signed()).unwrap_or_default();
    for req in open {
        publish(&js, bus, &req).await?;
    }
    tracing::info!(host = %bus.host, "grant approvals: listening for approvals of this host");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            Some(req) = outbox.recv() => publish(&js, bus, &req).await?,
            m = messages.next() => match m {
                Some(Ok(msg)) => {
                    for ev in apply(bus, &msg.payload) {
                        let _ = bus.events.send(ev).await;
                    }
                    msg.ack().await.map_err(|e| stream_err(&name)(e))?;
                }
                Some(Err(e)) => return Err(stream_err(&name)(Box::new(e))),
                None => return Err(stream_err(&name)("consumer ended".into())),
            },
            _ = tick.tick() => {
                for ev in expire(bus) {
                    let _ = bus.events.send(ev).await;
                }
            }
        }
    }
}

async fn publish(js: &jetstream::Context, bus: &Bus, req: &SignedRequest) -> Result<(), NatsError> {
    let id = req
        .verify_self()
        .map(|b| b.id)
        .unwrap_or_else(|_| req.hash());
    let payload = serde_json::to_vec(req).expect("invariant: requests always serialize");
    let subject = request_subject(&bus.nats.subject_prefix, &bus.host);
    let err = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Stream {
        name: grants_stream(&bus.nats),
        source: e,
    };
    js.send_publish(
        subject,
        PublishMessage::build()
            .payload(payload.into())
            .message_id(id),
    )
    .await
    .map_err(|e| err(Box::new(e)))?
    .await
    .map_err(|e| err(Box::new(e)))?;
    Ok(())
}

/// Requests that waited past their time: closed and recorded.
fn expire(bus: &Bus) -> Vec<ControlEvent> {
    let now = bus.clock.now();
    let gone = match bus.book.lock() {
        Ok(mut b) => b.expire(now).unwrap_or_else(|e| {
            tracing::error!(error = %error_chain(&e), "persisting expired grant requests failed");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    gone.into_iter()
        .map(|r| ControlEvent::Approval {
            detail: json!({"event": "request_expired", "request": r}),
            alert: None,
        })
        .collect()
}

/// One approval message: the grant it approves, or the refusal.
fn apply(bus: &Bus, raw: &[u8]) -> Vec<ControlEvent> {
    let ctx = Context {
        host: &bus.host,
        approvers: &bus.settings.approvers,
        two_person: bus.settings.two_person,
        now: bus.clock.now(),
    };
    let Ok(mut book) = bus.book.lock() else {
        return Vec::new();
    };
    let (approval, req) = match check(raw, &ctx, &*book) {
        Ok((a, r)) => (a, r.clone()),
        Err(refusal) => return vec![refused(raw, &refusal)],
    };
    // Closed first: should the grant fail, the request is still spent, so
    // no later copy of this approval can install anything.
    if let Err(e) = book.close(&req.id) {
        return vec![failed(&req.id, &approval.approver, &error_chain(&e))];
    }
    drop(book);
    let made = match bus.store.lock() {
        Ok(mut s) => s.grant_approved(&req, approval.clone()),
        Err(_) => return vec![failed(&req.id, &approval.approver, "grants store poisoned")],
    };
    match made {
        Ok(ev) => {
            tracing::info!(grant = %ev.grant.id, request = %req.id, approver = %approval.approver,
                user = %req.user, "grant request approved");
            vec![ControlEvent::Grant(Box::new(ev))]
        }
        Err(e) => vec![failed(&req.id, &approval.approver, &error_chain(&e))],
    }
}

fn failed(request: &str, approver: &str, why: &str) -> ControlEvent {
    tracing::error!(request, approver, why, "approved grant could not be made");
    ControlEvent::Approval {
        detail: json!({"event": "approval_failed", "request": request, "approver": approver, "reason": why}),
        alert: None,
    }
}

fn refused(raw: &[u8], refusal: &Refusal) -> ControlEvent {
    tracing::warn!(reason = %refusal, "grant approval refused");
    // The approval as it came, for the investigator (a forgery is evidence).
    let approval = serde_json::from_slice::<serde_json::Value>(raw)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(raw)));
    ControlEvent::Approval {
        detail: json!({
            "event": "approval_refused", "code": refusal.code(),
            "reason": refusal.to_string(), "approval": approval,
        }),
        alert: refusal.is_attack().then(|| refusal.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(cfg: &Settings) -> Arc<Approvals> {
        let key = Arc::new(SigningKey::from_bytes(&[4; 32]));
        open(cfg, "db-1", &key).unwrap().0
    }

    fn refusal(a: &Approvals) -> &str {
        match a {
            Approvals::Off(why) => why,
            Approvals::On(_) => panic!("approvals are on"),
        }
    }

    #[test]
    fn requests_without_nats_or_approvers_are_refused_saying_which() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Settings::default();
        cfg.approvals.requests_path = dir.path().join("requests.json");
        assert!(refusal(&opened(&cfg)).contains("need NATS"));
        cfg.delivery.nats = Some(NatsConfig::default());
        assert!(refusal(&opened(&cfg)).contains("need approver keys"));
        let carol = SigningKey::from_bytes(&[2; 32]).verifying_key();
        cfg.approvals.approvers =
            Approvers::parse(&[format!("carol:{}", hex::encode(carol.as_bytes()))]).unwrap();
        assert!(matches!(*opened(&cfg), Approvals::On(_)));
    }
}
