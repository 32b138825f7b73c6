//! The delivery thread: redact, seal, spool, write locally, release. Runs
//! on its own OS thread because sealing is CPU work and spooling is
//! blocking file I/O; neither may stall the async runtime that reads the
//! ring buffer.
//!
//! The spool is fsync'd at once for a group holding an alert or a denial,
//! else at most once per `sync_interval` (and when the stream pauses): an
//! fsync per group cost more CPU than everything else the agent does per
//! exec. What the page cache holds survives a crash of the agent; after a
//! power loss the sealer declares the unsynced tail (see [`crate::record::seal`]).

use std::{
    borrow::Cow,
    io::Write,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

use super::{Counters, DeliveryError, loss::SpoolLoss};
use crate::{
    event::Kind,
    record::{
        Batch, Built,
        alert::severity_of,
        canonical,
        redact::Redactor,
        seal::{Sealed, Sealer, Unsealed},
    },
    sink::{file::RotatingFile, journal::Journal},
    spool::SharedSpool,
};

/// Batches sealed and spooled under one fsync. Under load the channel
/// holds many small batches; one fsync for all of them keeps the disk
/// out of the way, and the bound keeps the latency of a group small.
const MAX_GROUP: usize = 32;
/// Without NATS, records written locally are released from the spool at
/// least this often (and at every fsync).
const RELEASE_BATCH: usize = 4096;

pub(super) struct Worker {
    pub(super) sealer: Sealer,
    /// Shared with the pipeline, which asks it whether a record needs it.
    pub(super) redactor: Arc<Redactor>,
    pub(super) spool: SharedSpool,
    /// No NATS: a record written locally is done, release it from the
    /// spool at once (else the spool would fill and shed for nothing).
    pub(super) release_at_once: bool,
    pub(super) stdout: Option<Box<dyn Write + Send>>,
    pub(super) format: crate::sink::ecs::RecordFormat,
    pub(super) file: Option<RotatingFile>,
    pub(super) journal: Option<Journal>,
    pub(super) counters: Arc<Counters>,
    /// Longest time appended records stay without an fsync (zero: fsync
    /// every group).
    pub(super) sync_interval: Duration,
    /// Drives the timed wait for the next batch.
    pub(super) rt: tokio::runtime::Handle,
    /// When the spool was last fsync'd, if records were appended since.
    pub(super) unsynced_since: Option<Instant>,
    /// The last seq written locally but not yet released from the spool,
    /// and how many records that is (no NATS).
    pub(super) unreleased: Option<(u64, usize)>,
    /// When a record was last signed.
    pub(super) last_signed: Option<Instant>,
    /// Least time between two group signatures.
    pub(super) sign_interval: Duration,
    /// Sealed records the spool could not keep, until a `lost` record said so.
    pub(super) loss: SpoolLoss,
}

/// Parses one builder line into the record to seal: drops the builder's
/// provisional `seq`, redacts `actor.argv`, and turns a `lost` record that
/// reports spool shedding into an alert. `None` when the line is not a
/// JSON object.
pub fn prepare_line(redactor: &Redactor, line: &[u8]) -> Option<Map<String, Value>> {
    let mut m: Map<String, Value> = serde_json::from_slice(line).ok()?;
    m.remove("seq");
    if let Some(Value::Array(argv)) = m.get_mut("actor").and_then(|a| a.get_mut("argv")) {
        redact_values(redactor, argv);
    }
    if let Some(Value::Object(env)) = m.get_mut("detail").and_then(|d| d.get_mut("env")) {
        for (name, v) in env.iter_mut() {
            if let Value::String(s) = v
                && let Cow::Owned(r) = redactor.redact_env(name, s)
            {
                *s = r;
            }
        }
    }
    shed_alert(&mut m);
    Some(m)
}

/// The fast path for a line in canonical form (as the record builder
/// writes them): its members as they are, without the builder's
/// provisional `seq`, with `actor.argv` redacted (the actor is encoded
/// again only when something was redacted). `None` sends the line down
/// the slow path ([`prepare_line`]): not canonical at the top level, or a
/// `lost` record (see [`shed_alert`]).
pub fn prepare_canonical<'a>(redactor: &Redactor, line: &'a [u8]) -> Option<Unsealed<'a>> {
    // The actor, most of a record's bytes, is split along with the line.
    let (split, mut actor) = canonical::split_members_and(line, "actor")?;
    let mut kind = None;
    let mut severity = None;
    let mut members = Vec::with_capacity(split.len() + 5);
    for (k, raw) in split {
        let value = match k {
            "seq" => continue,
            "kind" => {
                let s: &str = serde_json::from_slice(raw).ok()?;
                if s == "lost" {
                    return None;
                }
                kind = Some(s.to_owned());
                Cow::Borrowed(raw)
            }
            "decision" => {
                severity = decision_severity(raw)?;
                Cow::Borrowed(raw)
            }
            "actor" => redact_actor(redactor, raw, actor.take()?)?,
            "detail" => redact_env(redactor, raw)?,
            _ => Cow::Borrowed(raw),
        };
        members.push((Cow::Borrowed(k), value));
    }
    Some(Unsealed::Canonical {
        members,
        kind: kind?,
        severity,
    })
}

/// The fast path for a record the pipeline built: its members where the
/// builder noted them, without the provisional `seq`; the detail's
/// captured `env` redacted. `None` sends the record down the paths that
/// parse its line: when the pipeline did not find the actor's argv clean,
/// and for a `lost` record (see [`shed_alert`]).
pub fn prepare_built<'a>(redactor: &Redactor, batch: &'a Batch, r: &Built) -> Option<Unsealed<'a>> {
    if !r.argv_clean || r.kind == Kind::Lost {
        return None;
    }
    let mut severity = None;
    let mut members = Vec::with_capacity(r.members.len() + 5);
    for (k, raw) in batch.members_of(r) {
        let value = match k {
            "seq" => continue,
            "decision" => {
                severity = decision_severity(raw)?;
                Cow::Borrowed(raw)
            }
            "detail" => redact_env(redactor, raw)?,
            _ => Cow::Borrowed(raw),
        };
        members.push((Cow::Borrowed(k), value));
    }
    Some(Unsealed::Canonical {
        members,
        kind: r.kind.as_str().to_owned(),
        severity,
    })
}

/// The alert severity a record's decision member gives it; `None` when
/// the member is no JSON.
fn decision_severity(raw: &[u8]) -> Option<Option<String>> {
    let d: Value = serde_json::from_slice(raw).ok()?;
    Some(severity_of(
        d.get("severity").and_then(Value::as_str),
        d.get("action").and_then(Value::as_str),
    ))
}

/// The actor object (`raw`, split into `inner`) with its argv redacted;
/// borrowed when nothing was.
fn redact_actor<'a>(
    redactor: &Redactor,
    raw: &'a [u8],
    inner: Vec<canonical::Member<'a>>,
) -> Option<Cow<'a, [u8]>> {
    let Some((_, argv_raw)) = inner.iter().find(|(k, _)| *k == "argv") else {
        return Some(Cow::Borrowed(raw));
    };
    // Most argvs are plain text with nothing to redact: looked at in place.
    if let Ok(plain) = serde_json::from_slice::<Vec<&str>>(argv_raw)
        && redactor.argv_is_clean(&plain)
    {
        return Some(Cow::Borrowed(raw));
    }
    let mut redacted: Vec<String> = serde_json::from_slice(argv_raw).ok()?;
    if redactor.redact_argv(&mut redacted) == 0 {
        return Some(Cow::Borrowed(raw));
    }
    let mut actor: Map<String, Value> = serde_json::from_slice(raw).ok()?;
    actor.insert(
        "argv".into(),
        Value::Array(redacted.into_iter().map(Value::String).collect()),
    );
    Some(Cow::Owned(canonical::to_vec(&Value::Object(actor))))
}

/// The detail object with the values of its captured `env` redacted;
/// borrowed when there is none or nothing was.
fn redact_env<'a>(redactor: &Redactor, raw: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    // In canonical JSON these bytes are only ever a key named `env` (a
    // quote inside a string is escaped): without them, nothing to split.
    if memchr::memmem::find(raw, b"\"env\":").is_none() {
        return Some(Cow::Borrowed(raw));
    }
    let inner = canonical::split_members(raw)?;
    let Some((_, env_raw)) = inner.iter().find(|(k, _)| *k == "env") else {
        return Some(Cow::Borrowed(raw));
    };
    let mut env: Map<String, Value> = serde_json::from_slice(env_raw).ok()?;
    let mut changed = false;
    for (name, v) in env.iter_mut() {
        if let Value::String(s) = v
            && let Cow::Owned(r) = redactor.redact_env(name, s)
        {
            *s = r;
            changed = true;
        }
    }
    if !changed {
        return Some(Cow::Borrowed(raw));
    }
    let mut detail: Map<String, Value> = serde_json::from_slice(raw).ok()?;
    detail.insert("env".into(), Value::Object(env));
    Some(Cow::Owned(canonical::to_vec(&Value::Object(detail))))
}

/// Redacts an argv held as JSON values. The strings are moved out and
/// back, not copied: most argvs have nothing to redact.
fn redact_values(redactor: &Redactor, argv: &mut Vec<Value>) {
    let mut strings: Vec<String> = std::mem::take(argv)
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    redactor.redact_argv(&mut strings);
    *argv = strings.into_iter().map(Value::String).collect();
}

/// Shed records are lost audit evidence: the `lost` record that counts
/// them becomes an alert (it then also goes to `<prefix>.alert.>`).
pub fn shed_alert(m: &mut Map<String, Value>) {
    if m.get("kind").and_then(Value::as_str) != Some("lost") || m.contains_key("decision") {
        return;
    }
    let shed = m
        .get("detail")
        .and_then(|d| d.get("counts"))
        .and_then(|c| c.get("spool_shed"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if shed > 0 {
        m.insert(
            "decision".into(),
            json!({
                "action": "alert",
                "enforced": false,
                "rule": "spool-shed",
                "severity": "high",
                "reason": format!(
                    "{shed} records shed from the full spool (NATS unreachable past the spool bound)"
                ),
                "grant_id": null,
            }),
        );
    }
}

impl Worker {
    /// Delivers batches until the channel closes, publishing the number
    /// of batches done; then closes the chain cleanly.
    pub(super) fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        written: &watch::Sender<u64>,
    ) -> Result<(), DeliveryError> {
        let mut done = 0u64;
        let mut group = Vec::with_capacity(MAX_GROUP);
        loop {
            let first = match self.unsynced_since {
                Some(since) => {
                    let wait = self.sync_interval.saturating_sub(since.elapsed());
                    // Built inside block_on: a timer needs the runtime's context.
                    let next = self
                        .rt
                        .block_on(async { tokio::time::timeout(wait, rx.recv()).await });
                    match next {
                        Ok(b) => b,
                        Err(_elapsed) => {
                            self.sync()?;
                            continue;
                        }
                    }
                }
                None => rx.blocking_recv(),
            };
            let Some(first) = first else { break };
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(b) => group.push(b),
                    Err(_) => break,
                }
            }
            self.deliver(&group)?;
            done += group.len() as u64;
            group.clear();
            written.send_replace(done);
        }
        self.sync()?;
        // Only after a clean run: a failed one leaves the chain "not
        // clean", so the next start recovers its tip from the spool.
        self.sealer.close()?;
        Ok(())
    }

    /// Releases from the spool what the local sinks took (no NATS). Done
    /// with the fsync or every [`RELEASE_BATCH`] records, not per group:
    /// the release writes the spool's ack file, a syscall per group for
    /// nothing more than freeing space a little sooner. A crash before it
    /// leaves those records pending, and the next release covers them.
    fn release(&mut self) {
        let Some((upto, _)) = self.unreleased.take() else {
            return;
        };
        if let Err(e) = self.spool.lock().ack(upto) {
            // Releasing only frees space; a failure leaves entries to ack later.
            self.counters.spool_errors.fetch_add(1, Relaxed);
            warn!(error = %crate::error::error_chain(&e), "spool: releasing records failed");
        }
    }

    fn sync(&mut self) -> Result<(), DeliveryError> {
        self.release();
        if self.unsynced_since.take().is_some()
            && let Err(e) = self.spool.lock().flush()
        {
            // The records are in the page cache and stay peekable; only
            // their durability across a power loss is in doubt.
            self.counters.spool_errors.fetch_add(1, Relaxed);
            error!(error = %crate::error::error_chain(&e), "spool: fsync failed");
        }
        Ok(())
    }

    /// A line without the pipeline's member boundaries, or one its fast
    /// path passed over: split or parsed here.
    fn prepare<'a>(&self, line: &'a [u8]) -> Option<Unsealed<'a>> {
        if let Some(record) = prepare_canonical(&self.redactor, line) {
            return Some(record);
        }
        let record = prepare_line(&self.redactor, line).map(Unsealed::Map);
        if record.is_none() {
            let n = self.counters.invalid.fetch_add(1, Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(count = n, "a builder line is not a JSON object; dropped");
            }
        }
        record
    }

    fn deliver(&mut self, group: &[Batch]) -> Result<(), DeliveryError> {
        let mut records: Vec<Unsealed<'_>> = Vec::new();
        for batch in group {
            if batch.records.is_empty() {
                let lines = batch.bytes.split(|&b| b == b'\n');
                records.extend(
                    lines
                        .filter(|l| !l.is_empty())
                        .filter_map(|l| self.prepare(l)),
                );
                continue;
            }
            for r in &batch.records {
                let record = prepare_built(&self.redactor, batch, r)
                    .or_else(|| self.prepare(&batch.bytes[r.line.clone()]));
                records.extend(record);
            }
        }
        self.loss.learn_host(&records);
        // A loss not yet reported goes first: if this group reaches the
        // spool at all, the report does.
        let report = if records.is_empty() {
            None
        } else {
            let own = records.iter().any(|r| match r {
                Unsealed::Map(m) => m.get("kind").and_then(Value::as_str) == Some("agent"),
                Unsealed::Canonical { kind, .. } => kind == "agent",
            });
            self.loss.report(own)
        };
        let report = report.map(|(rec, taken)| {
            records.insert(0, Unsealed::Map(rec));
            taken
        });
        let sign_last = self
            .last_signed
            .is_none_or(|t| t.elapsed() >= self.sign_interval);
        let sealed: Vec<Sealed> = self.sealer.seal_group(records, sign_last)?;
        let Some(last) = sealed.last().map(|r| r.seq) else {
            return Ok(());
        };
        self.note_signatures(&sealed);
        self.sealer.persist_tip()?;
        let since = *self.unsynced_since.get_or_insert_with(Instant::now);
        let sync_now =
            sealed.iter().any(|r| r.severity.is_some()) || since.elapsed() >= self.sync_interval;
        let (shed, kept, failed) = {
            let mut spool = self.spool.lock();
            let before = spool.stats().appended;
            let appended = spool.append_group(&sealed);
            let kept = usize::try_from(spool.stats().appended - before).unwrap_or(usize::MAX);
            let synced = if sync_now {
                let r = spool.flush();
                self.unsynced_since = None;
                r.err()
            } else {
                spool.publish();
                None
            };
            if let Some(e) = synced {
                self.counters.spool_errors.fetch_add(1, Relaxed);
                error!(error = %crate::error::error_chain(&e), "spool: fsync failed");
            }
            (spool.take_shed(), kept.min(sealed.len()), appended.err())
        };
        self.spool.notify_flushed();
        if let Some(taken) = report
            && kept == 0
        {
            self.loss.restore(taken);
        }
        if failed.is_none() {
            self.loss.spooled();
        }
        if let Some(e) = failed {
            // Not fatal: the agent keeps monitoring and the records still
            // go to the local sinks; a `lost` alert counts what NATS misses.
            let missed = &sealed[kept..];
            let n = missed.len() as u64;
            if let (Some(a), Some(b)) = (missed.first(), missed.last()) {
                self.loss
                    .unwritable(a.seq, b.seq, n, crate::error::error_chain(&e));
            }
            self.counters.spool_errors.fetch_add(1, Relaxed);
            let total = self.counters.unwritable.fetch_add(n, Relaxed) + n;
            if total.is_power_of_two() || total == n {
                error!(
                    records = n,
                    total,
                    error = %crate::error::error_chain(&e),
                    "spool: records could not be written and will not reach NATS"
                );
            }
        }
        if shed > 0 {
            let total = self.counters.shed.fetch_add(shed, Relaxed) + shed;
            error!(
                shed,
                total, "spool full: the oldest unsent records were shed (NATS unreachable)"
            );
        }
        let mut out = Vec::with_capacity(sealed.iter().map(|r| r.line.len()).sum());
        for r in &sealed {
            out.extend_from_slice(&r.line);
        }
        let local = self.local_lines(&out, &sealed);
        if let Some(w) = &mut self.stdout {
            w.write_all(&local)
                .and_then(|()| w.flush())
                .map_err(DeliveryError::Stdout)?;
        }
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_batch(&local)
        {
            sink_error(&self.counters, "file", &e, sealed.len());
        }
        if let Some(j) = &mut self.journal {
            for r in &sealed {
                if let Err(e) = j.send(r) {
                    sink_error(&self.counters, "journal", &e, 1);
                }
            }
        }
        if self.release_at_once {
            self.unreleased = Some((last, self.unreleased.map_or(0, |(_, n)| n) + sealed.len()));
            if sync_now || self.unreleased.is_some_and(|(_, n)| n >= RELEASE_BATCH) {
                self.release();
            }
        }
        self.counters
            .records
            .fetch_add(sealed.len() as u64, Relaxed);
        self.counters.bytes.fetch_add(out.len() as u64, Relaxed);
        Ok(())
    }
}

impl Worker {
    /// Keeps the time of the last signature and, for the driver, whether
    /// the tip now waits for one.
    fn note_signatures(&mut self, sealed: &[Sealed]) {
        if sealed.iter().any(|r| r.signed) {
            self.last_signed = Some(Instant::now());
        }
        let unsigned = &self.counters.unsigned_since_ns;
        if sealed.last().is_some_and(|r| r.signed) {
            unsigned.store(0, Relaxed);
        } else if unsigned.load(Relaxed) == 0 {
            unsigned.store(crate::sys::host::boottime_ns().max(1), Relaxed);
        }
    }

    /// What stdout and the file get: the sealed lines as they are, or each
    /// as an ECS document. A sealed line is always a JSON object, so a
    /// conversion cannot fail in practice; if it did, the sealed line is
    /// written instead (nothing lost) and counted as a sink error.
    fn local_lines<'a>(&self, out: &'a [u8], sealed: &[Sealed]) -> std::borrow::Cow<'a, [u8]> {
        if self.format == crate::sink::ecs::RecordFormat::Json {
            return std::borrow::Cow::Borrowed(out);
        }
        let mut ecs = Vec::with_capacity(out.len() * 2);
        for r in sealed {
            match crate::sink::ecs::ecs_line(&r.line) {
                Some(doc) => ecs.extend_from_slice(&doc),
                None => {
                    self.counters.sink_errors.fetch_add(1, Relaxed);
                    ecs.extend_from_slice(&r.line);
                }
            }
        }
        std::borrow::Cow::Owned(ecs)
    }
}

/// A local sink other than stdout failed: the records are in the spool
/// (and on stdout/NATS), so this is counted and logged, not fatal.
fn sink_error(c: &Counters, sink: &str, e: &dyn std::error::Error, records: usize) {
    let n = c.sink_errors.fetch_add(records as u64, Relaxed) + records as u64;
    if n.is_power_of_two() || records > 1 {
        error!(
            sink,
            error = %crate::error::error_chain(e),
            count = n,
            "writing records to a local sink failed"
        );
    }
}
