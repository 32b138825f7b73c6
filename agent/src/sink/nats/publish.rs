//! Publishing one spool batch to JetStream and awaiting its acks, with the
//! check that makes a pre-empted message id visible.
//!
//! A record's `Nats-Msg-Id` is its seal (`hash`), which nobody can know
//! before the agent wrote the record. Should the server still answer
//! "duplicate" for a record this process sends for the first time,
//! something else published under that id first: the server would drop
//! our record as a retry. That is a collision: it is counted, logged, and
//! the record is published again under a fresh random id (kept for its
//! retries), so it lands; the runtime turns the count into an alert
//! record. A duplicate for a record sent before (a retry after a lost ack,
//! or spool entries a previous run may already have delivered) is the
//! server's de-duplication doing its job.

use std::{collections::HashMap, sync::atomic::Ordering::Relaxed, time::Instant};

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishError},
    message::PublishMessage,
    publish::PublishAck,
};
use bytes::Bytes;
use futures::future::join_all;
use tracing::{debug, error, warn};

use super::{Counters, route};
use crate::{error::error_chain, spool::SpoolEntry};

/// What the sink remembers between batches about the ids it used.
#[derive(Debug, Default)]
pub(super) struct Ids {
    /// Highest spool seq this process has tried to publish (or that a
    /// previous run may have published: the spool's tip at start).
    sent_upto: u64,
    /// Ids taken by someone else, and the fresh id used instead.
    renamed: HashMap<String, String>,
}

impl Ids {
    pub(super) fn new(spool_tip_at_start: u64) -> Self {
        Self {
            sent_upto: spool_tip_at_start,
            renamed: HashMap::new(),
        }
    }

    fn id_for(&self, id: String) -> String {
        self.renamed.get(&id).cloned().unwrap_or(id)
    }
}

/// A fresh id for a record whose own id was taken: the original plus 128
/// random bits, so whoever took the first cannot take this one too.
fn fresh_id(id: &str) -> Option<String> {
    let mut r = [0u8; 16];
    getrandom::fill(&mut r).ok()?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{id}:{hex}"))
}

struct Send {
    seq: u64,
    subject: String,
    id: String,
    payload: Bytes,
    /// First time this process publishes the record.
    fresh: bool,
}

enum Pending {
    /// Not a record: dropped and counted, nothing to wait for.
    Skip,
    /// Sent; its ack future is the next one in the batch's list.
    Sent(Send),
    Failed,
}

async fn send(js: &jetstream::Context, s: &Send) -> Result<PublishAckFuture, ()> {
    let publish = PublishMessage::build()
        .payload(s.payload.clone())
        .message_id(s.id.clone());
    js.send_publish(s.subject.clone(), publish)
        .await
        .map_err(|err| {
            debug!(seq = s.seq, error = %error_chain(&err), "NATS sink: publish failed");
        })
}

/// Judges one ack; on a collision publishes again under a fresh id and
/// awaits that. True when the record's message is stored.
async fn settle(
    js: &jetstream::Context,
    s: Send,
    ack: Result<PublishAck, PublishError>,
    ids: &mut Ids,
    c: &Counters,
) -> bool {
    let ack = match ack {
        Ok(ack) => ack,
        Err(err) => {
            debug!(seq = s.seq, error = %error_chain(&err), "NATS sink: no ack");
            return false;
        }
    };
    if !ack.duplicate {
        return true;
    }
    if !s.fresh {
        c.duplicates.fetch_add(1, Relaxed);
        return true;
    }
    c.collisions.fetch_add(1, Relaxed);
    let Some(id) = fresh_id(&s.id) else {
        error!(seq = s.seq, id = %s.id, "NATS sink: message id taken and no randomness for another; the record stays spooled");
        return false;
    };
    error!(
        seq = s.seq,
        taken = %s.id,
        stored_as = ack.sequence,
        new_id = %id,
        "NATS sink: another publisher used this record's message id first; publishing it again under a fresh id"
    );
    ids.renamed.insert(s.id.clone(), id.clone());
    let again = Send { id, ..s };
    match send(js, &again).await {
        Ok(fut) => {
            c.published.fetch_add(1, Relaxed);
            match fut.await {
                // A duplicate here is our own earlier attempt under the
                // fresh id (nobody else can know it).
                Ok(_) => true,
                Err(err) => {
                    debug!(seq = again.seq, error = %error_chain(&err), "NATS sink: no ack");
                    false
                }
            }
        }
        Err(()) => false,
    }
}

/// Publishes a batch and awaits every ack. Returns the seq up to which
/// every record (and its alert copy) is stored, and whether anything failed.
pub(super) async fn publish_batch(
    js: &jetstream::Context,
    prefix: &str,
    batch: &[SpoolEntry],
    ids: &mut Ids,
    c: &Counters,
) -> (Option<u64>, bool) {
    let start = Instant::now();
    let mut pending = Vec::with_capacity(batch.len() * 2);
    let mut futs = Vec::with_capacity(batch.len() * 2);
    'entries: for e in batch {
        let Some(route) = route(&e.line, prefix) else {
            warn!(
                seq = e.seq,
                "NATS sink: spool entry is not a sealed record; dropped"
            );
            c.invalid.fetch_add(1, Relaxed);
            pending.push((e.seq, Pending::Skip));
            continue;
        };
        let fresh = e.seq > ids.sent_upto;
        ids.sent_upto = ids.sent_upto.max(e.seq);
        let payload = Bytes::copy_from_slice(e.line.strip_suffix(b"\n").unwrap_or(&e.line));
        let mut sends = vec![(route.audit_subject, route.msg_id)];
        sends.extend(route.alert);
        for (subject, id) in sends {
            let s = Send {
                seq: e.seq,
                subject,
                id: ids.id_for(id),
                payload: payload.clone(),
                fresh,
            };
            match send(js, &s).await {
                Ok(fut) => {
                    c.published.fetch_add(1, Relaxed);
                    pending.push((e.seq, Pending::Sent(s)));
                    futs.push(fut);
                }
                Err(()) => {
                    pending.push((e.seq, Pending::Failed));
                    break 'entries;
                }
            }
        }
    }
    // The acks are awaited all at once: each one's timeout starts when it
    // is first polled, so awaiting them one after another would stall a
    // batch whose acks were lost (a stream leader killed with them in
    // flight) for its length times the timeout, while the spool grows.
    let mut acks = join_all(futs.into_iter().map(IntoFuture::into_future))
        .await
        .into_iter();
    // A record is done when all its messages are acked; the spool is acked
    // up to the last record of the unbroken done prefix.
    let mut results: Vec<(u64, bool)> = Vec::with_capacity(batch.len());
    for (seq, p) in pending {
        let ok = match p {
            Pending::Skip => true,
            Pending::Failed => false,
            Pending::Sent(s) => match acks.next() {
                Some(ack) => settle(js, s, ack, ids, c).await,
                None => false,
            },
        };
        match results.last_mut() {
            Some((s, all)) if *s == seq => *all &= ok,
            _ => results.push((seq, ok)),
        }
    }
    let done_upto = results
        .iter()
        .take_while(|(_, ok)| *ok)
        .last()
        .map(|(s, _)| *s);
    let failed = results.len() < batch.len() || results.iter().any(|(_, ok)| !ok);
    if !failed {
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        c.batches.fetch_add(1, Relaxed);
        c.ack_latency_last_us.store(us, Relaxed);
        c.ack_latency_max_us.fetch_max(us, Relaxed);
        c.ack_latency_total_us.fetch_add(us, Relaxed);
    }
    (done_upto, failed)
}
