//! Reading the stream back (`debugmon verify`): every message of a
//! subject, with an ephemeral ordered consumer, in stream order, until none
//! is pending; or following it, new messages as they arrive (`review
//! --serve`).

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull},
    stream,
};
use futures::StreamExt;

use super::{NatsConfig, NatsError, connect, jetstream};

/// How long to wait for a message before concluding the stream has no
/// more for the subject (the `pending` count normally ends the read).
const IDLE: Duration = Duration::from_secs(3);

/// The configured stream, opened on a fresh connection.
async fn open_stream(cfg: &NatsConfig) -> Result<stream::Stream, NatsError> {
    let client = connect(cfg).await?;
    jetstream(cfg, client)
        .get_stream(&cfg.stream.name)
        .await
        .map_err(|e| consumer_err(cfg, Box::new(e)))
}

fn consumer_err(cfg: &NatsConfig, source: Box<dyn std::error::Error + Send + Sync>) -> NatsError {
    NatsError::Consumer {
        name: cfg.stream.name.clone(),
        source,
    }
}

/// The messages of `subject` from `deliver` on, through an ephemeral
/// ordered consumer.
async fn ordered_messages(
    cfg: &NatsConfig,
    stream: &stream::Stream,
    subject: &str,
    deliver: DeliverPolicy,
) -> Result<pull::Ordered, NatsError> {
    stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: deliver,
            ..Default::default()
        })
        .await
        .map_err(|e| consumer_err(cfg, Box::new(e)))?
        .messages()
        .await
        .map_err(|e| consumer_err(cfg, Box::new(e)))
}

/// Hands every message's payload of `subject` to `each`, in stream order;
/// returns how many there were.
pub async fn read_subject(
    cfg: &NatsConfig,
    subject: &str,
    mut each: impl FnMut(&[u8]),
) -> Result<u64, NatsError> {
    let mut stream = open_stream(cfg).await?;
    let info = stream
        .info()
        .await
        .map_err(|e| consumer_err(cfg, Box::new(e)))?;
    if info.state.messages == 0 {
        return Ok(0);
    }
    let mut messages = ordered_messages(cfg, &stream, subject, DeliverPolicy::All).await?;
    let mut n = 0;
    loop {
        let Ok(next) = tokio::time::timeout(IDLE, messages.next()).await else {
            break;
        };
        let Some(msg) = next else { break };
        let msg = msg.map_err(|e| consumer_err(cfg, Box::new(e)))?;
        each(&msg.payload);
        n += 1;
        if msg.info().is_ok_and(|i| i.pending == 0) {
            break;
        }
    }
    Ok(n)
}

/// Hands every message of `subject` from stream sequence `from` (1: the
/// first) to `each` with its stream sequence, and then every new one as it
/// arrives (`debugmon review --serve`); returns only on an error, after
/// which a caller resumes from the last sequence it saw plus one.
pub async fn follow_subject(
    cfg: &NatsConfig,
    subject: &str,
    from: u64,
    mut each: impl FnMut(&[u8], u64),
) -> Result<(), NatsError> {
    let stream = open_stream(cfg).await?;
    let start = DeliverPolicy::ByStartSequence {
        start_sequence: from.max(1),
    };
    let mut messages = ordered_messages(cfg, &stream, subject, start).await?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| consumer_err(cfg, Box::new(e)))?;
        let seq = msg.info().map_or(0, |i| i.stream_sequence);
        each(&msg.payload, seq);
    }
    Err(consumer_err(cfg, "the stream's consumer ended".into()))
}
