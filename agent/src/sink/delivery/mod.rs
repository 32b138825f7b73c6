//! The delivery stage between the pipeline and the outside world. Batches
//! of builder records (JSON lines) go through a bounded channel to one
//! thread that, per group of batches:
//!
//! 1. redacts `actor.argv` and seals each record (seq, hash chain,
//!    signature: [`crate::record::seal`]), here and not in the pipeline, because a
//!    seal costs tens of microseconds;
//! 2. appends the group to the durable spool (fsync'd at once when it
//!    holds an alert or a denial, else within `sync_interval`): a record
//!    counts as sent only from here on;
//! 3. writes it to the enabled local sinks (stdout, rotated file, journal);
//! 4. without NATS, releases it from the spool at once; with NATS, the
//!    [`NatsSink`] task releases it when JetStream acked it.
//!
//! Backpressure, never a silent drop: while the thread is behind, `send`
//! waits, the pipeline stops reading, and the kernel counts what it drops.
//! Past the spool bound (NATS away for long) the oldest records are shed;
//! [`Delivery::spool_shed`] counts them for the next `lost` record, which
//! goes out as an alert.

mod loss;
mod worker;

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use loss::SpoolLoss;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::info;
use worker::Worker;
pub use worker::{prepare_built, prepare_canonical, prepare_line, shed_alert};

use super::{
    file::{FileSinkConfig, FileSinkError, RotatingFile},
    journal::{Journal, JournalError},
    nats::{NatsConfig, NatsError, NatsHandle, NatsSink, NatsStats},
};
use crate::{
    record::{
        Batch,
        redact::{RedactConfig, Redactor},
        seal::{SealError, Sealer},
    },
    spool::{SharedSpool, Spool, SpoolConfig, SpoolError},
};

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Redact(#[from] crate::record::redact::RedactError),
    #[error(
        "state directory {path} is not writable{hint}: the host key, seal state and spool live there (set host.state_dir, host.key_path and spool.dir)"
    )]
    StateDir {
        path: PathBuf,
        hint: &'static str,
        #[source]
        io_error: io::Error,
    },
    #[error("opening the seal chain")]
    Seal(#[from] SealError),
    #[error("durable spool")]
    Spool(#[from] SpoolError),
    #[error("record file sink")]
    File(#[from] FileSinkError),
    #[error("journal sink")]
    Journal(#[from] JournalError),
    #[error("NATS settings")]
    Nats(#[from] NatsError),
    #[error("writing records to stdout")]
    Stdout(#[source] io::Error),
    #[error("the delivery thread stopped")]
    Gone,
    #[error("the delivery stage was started outside a tokio runtime")]
    NoRuntime,
    #[error("starting the delivery thread")]
    Spawn(#[source] io::Error),
}

/// Settings (from `[host]`, `[sinks]`, `[spool]`, `[nats]`).
/// Default of `spool.sync_interval_ms`.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 1000;
/// While records flow, a group's last record is signed only when this long
/// has passed since the last signature: a signature costs more than
/// everything else about a record, and the chain links the records
/// between two signatures to the later one. After a burst the tip may be
/// left unsigned; the driver then asks for a signed `checkpoint` record
/// ([`Delivery::unsigned_tip_since`]), so no record stays unproven for
/// long.
pub const SIGN_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub state_dir: PathBuf,
    pub key_path: PathBuf,
    pub spool: SpoolConfig,
    pub stdout: bool,
    /// How stdout and the file write records (`[sinks] format`); the
    /// spool, NATS and the journal always carry the sealed record.
    pub format: crate::sink::ecs::RecordFormat,
    pub journal: bool,
    pub file: Option<FileSinkConfig>,
    /// `None`: NATS disabled, records are released once written locally.
    pub nats: Option<NatsConfig>,
    /// Batches in flight between the pipeline and the delivery thread.
    pub capacity: usize,
    /// How long `close` lets NATS take what is spooled; the rest stays in
    /// the spool for the next start.
    pub nats_grace: Duration,
    /// Longest time spooled records wait for an fsync (`spool.sync_interval_ms`).
    pub sync_interval: Duration,
    /// `[redact]`: patterns, flags and programs whose secrets never reach a record.
    pub redact: RedactConfig,
    /// Least time between two group signatures ([`SIGN_INTERVAL`]; not a
    /// setting: tests move it to see both sides of it).
    pub sign_interval: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/debugmon"),
            key_path: PathBuf::from("/var/lib/debugmon/host.key"),
            spool: SpoolConfig::default(),
            stdout: true,
            format: crate::sink::ecs::RecordFormat::Json,
            journal: false,
            file: None,
            nats: None,
            capacity: 64,
            nats_grace: Duration::from_secs(5),
            sync_interval: Duration::from_millis(DEFAULT_SYNC_INTERVAL_MS),
            redact: RedactConfig::default(),
            sign_interval: SIGN_INTERVAL,
        }
    }
}

/// Counters shared with the delivery thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    /// Records shed by the spool bound, cumulative.
    shed: AtomicU64,
    /// Lines that were not JSON objects (dropped, logged).
    invalid: AtomicU64,
    /// Local sink writes that failed (file, journal), records affected.
    sink_errors: AtomicU64,
    /// Sealed records the spool could not write (disk full, I/O error).
    unwritable: AtomicU64,
    /// Spool writes, fsyncs or releases that failed.
    spool_errors: AtomicU64,
    /// Torn frames cut when the spool was opened.
    torn: AtomicU64,
    /// Boot-time ns when the chain's tip was released without a
    /// signature (no signed record after it yet); 0 while the tip is signed.
    unsigned_since_ns: AtomicU64,
}

/// What a finished delivery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub records: u64,
    pub bytes: u64,
    pub spool_shed: u64,
    pub invalid: u64,
    pub sink_errors: u64,
    /// Entries left in the spool for the next start.
    pub spool_pending: u64,
    /// Bytes the spool's segments hold.
    pub spool_bytes: u64,
    /// Sealed records the spool could not write; they miss NATS.
    pub spool_unwritable: u64,
    /// Torn frames (a kill during a write) cut when the spool was opened.
    pub spool_torn: u64,
    pub spool_errors: u64,
}

/// The running stage; the interface the driver uses is `send`, `flushed`
/// and `close`.
pub struct Delivery {
    tx: mpsc::Sender<Batch>,
    redactor: Arc<Redactor>,
    thread: JoinHandle<Result<(), DeliveryError>>,
    queued: AtomicU64,
    written: watch::Receiver<u64>,
    counters: Arc<Counters>,
    spool: SharedSpool,
    nats: Option<NatsHandle>,
    nats_grace: Duration,
    sign_interval: Duration,
    public_key: String,
    sinks: Vec<String>,
}

/// Fails with the path when the state directory cannot be created or
/// written: said once at start rather than as a seal error later.
fn check_writable(dir: &Path) -> Result<(), DeliveryError> {
    let probe = dir.join(".debugmon-write-test");
    let r = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    r.map_err(|io_error| DeliveryError::StateDir {
        path: dir.to_owned(),
        // SAFETY: geteuid has no preconditions.
        hint: if unsafe { libc::geteuid() } == 0 {
            ""
        } else {
            " (debugmon runs as root)"
        },
        io_error,
    })
}

impl Delivery {
    /// Opens key, chain, spool and sinks, and starts the thread (and the
    /// NATS task). Call from within a tokio runtime: the thread's timed
    /// fsync and the NATS task run on it.
    pub fn start(cfg: DeliveryConfig) -> Result<Self, DeliveryError> {
        let out: Option<Box<dyn Write + Send>> = if cfg.stdout {
            Some(Box::new(io::BufWriter::with_capacity(
                256 * 1024,
                io::stdout(),
            )))
        } else {
            None
        };
        Self::start_with(cfg, out)
    }

    /// Same, with any writer in place of stdout (tests use a buffer).
    pub fn start_with(
        cfg: DeliveryConfig,
        stdout: Option<Box<dyn Write + Send>>,
    ) -> Result<Self, DeliveryError> {
        check_writable(&cfg.state_dir)?;
        if let Some(dir) = cfg.key_path.parent() {
            check_writable(dir)?;
        }
        check_writable(&cfg.spool.dir)?;
        let spool = Spool::open(&cfg.spool)?;
        let tip_at_start = spool.last_appended().map_or(0, |t| t.seq);
        let opened = spool.stats();
        let sealer = Sealer::open_with_tip(&cfg.state_dir, &cfg.key_path, spool.last_appended())?;
        let public_key = sealer.public_key_hex();
        let spool = SharedSpool::new(spool);
        let mut sinks = Vec::new();
        if stdout.is_some() {
            sinks.push("stdout".to_owned());
        }
        let file = match cfg.file {
            Some(f) => {
                sinks.push("file".to_owned());
                Some(RotatingFile::open(f)?)
            }
            None => None,
        };
        let journal = if cfg.journal {
            sinks.push("journal".to_owned());
            Some(Journal::connect()?)
        } else {
            None
        };
        if let Some(n) = &cfg.nats {
            n.validate()?;
            sinks.push("nats".to_owned());
        }
        let counters = Arc::new(Counters::default());
        counters.torn.store(opened.torn_frames, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Batch>(cfg.capacity.max(1));
        let (written_tx, written) = watch::channel(0u64);
        let redactor = Arc::new(Redactor::new(&cfg.redact)?);
        let worker = Worker {
            sealer,
            redactor: Arc::clone(&redactor),
            spool: spool.clone(),
            release_at_once: cfg.nats.is_none(),
            stdout,
            format: cfg.format,
            file,
            journal,
            counters: Arc::clone(&counters),
            sync_interval: cfg.sync_interval,
            rt: tokio::runtime::Handle::try_current().map_err(|_| DeliveryError::NoRuntime)?,
            unsynced_since: None,
            last_signed: None,
            unreleased: None,
            sign_interval: cfg.sign_interval,
            loss: SpoolLoss::torn_at_open(opened.torn_frames, opened.torn_bytes),
        };
        let thread = std::thread::Builder::new()
            .name("debugmon-deliver".into())
            .spawn(move || worker.run(rx, &written_tx))
            .map_err(DeliveryError::Spawn)?;
        // Started after the thread: a spool left by the previous run
        // drains at once, in order, before the new records.
        let nats = cfg
            .nats
            .map(|n| NatsSink::spawn(n, spool.clone(), tip_at_start));
        info!(sinks = %sinks.join(","), spool = %cfg.spool.dir.display(), "delivery started");
        Ok(Self {
            tx,
            redactor,
            thread,
            queued: AtomicU64::new(0),
            written,
            counters,
            spool,
            nats,
            nats_grace: cfg.nats_grace,
            sign_interval: cfg.sign_interval,
            public_key,
            sinks,
        })
    }

    /// The redactor this thread applies, for the pipeline to ask whether
    /// a record needs it (see [`crate::record::Built::argv_clean`]).
    pub fn redactor(&self) -> Arc<Redactor> {
        Arc::clone(&self.redactor)
    }

    /// Hex Ed25519 public key of the host (for the start record).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Enabled sinks, for `/status`.
    pub fn sink_names(&self) -> Vec<String> {
        self.sinks.clone()
    }

    /// Boot-time ns since which the last released record has had no
    /// signature after it, when that is longer ago than the signing
    /// interval at `now_ns`; `None` while the tip is signed or recent.
    pub fn unsigned_tip_since(&self, now_ns: u64) -> Option<u64> {
        let since = self.counters.unsigned_since_ns.load(Ordering::Relaxed);
        let interval = u64::try_from(self.sign_interval.as_nanos()).unwrap_or(u64::MAX);
        (since != 0 && now_ns.saturating_sub(since) >= interval).then_some(since)
    }

    /// Records shed by the spool bound since start (cumulative).
    pub fn spool_shed(&self) -> u64 {
        self.counters.shed.load(Ordering::Relaxed)
    }

    pub fn nats_stats(&self) -> Option<NatsStats> {
        self.nats.as_ref().map(NatsHandle::stats)
    }

    pub fn stats(&self) -> DeliveryStats {
        let spool = self.spool.lock().stats();
        DeliveryStats {
            records: self.counters.records.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            spool_shed: self.spool_shed(),
            invalid: self.counters.invalid.load(Ordering::Relaxed),
            sink_errors: self.counters.sink_errors.load(Ordering::Relaxed),
            spool_pending: spool.pending,
            spool_bytes: spool.bytes,
            spool_unwritable: self.counters.unwritable.load(Ordering::Relaxed),
            spool_torn: self.counters.torn.load(Ordering::Relaxed),
            spool_errors: self.counters.spool_errors.load(Ordering::Relaxed),
        }
    }

    /// Queues a batch; waits while the delivery thread is behind.
    pub async fn send(&self, batch: impl Into<Batch>) -> Result<(), DeliveryError> {
        let batch = batch.into();
        if batch.is_empty() {
            return Ok(());
        }
        self.tx.send(batch).await.map_err(|_| DeliveryError::Gone)?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until every batch queued so far is sealed, spooled and
    /// written to the local sinks (systemd hears READY=1 only after the
    /// start record is out).
    pub async fn flushed(&self) -> Result<(), DeliveryError> {
        let target = self.queued.load(Ordering::Relaxed);
        let mut written = self.written.clone();
        written
            .wait_for(|&n| n >= target)
            .await
            .map(|_| ())
            .map_err(|_| DeliveryError::Gone)
    }

    /// Delivers everything queued, closes the chain cleanly, gives NATS
    /// its grace period, and returns the bytes written to the local sinks.
    pub async fn close(self) -> Result<u64, DeliveryError> {
        drop(self.tx);
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|_| DeliveryError::Gone)?
            .map_err(|_| DeliveryError::Gone);
        // Even when the thread failed, let NATS take what is durable.
        if let Some(n) = self.nats {
            let s = n.shutdown(self.nats_grace).await;
            info!(
                acked = s.acked,
                duplicates = s.duplicates,
                errors = s.errors,
                "NATS sink stopped"
            );
        }
        joined??;
        let pending = self.spool.lock().stats().pending;
        let bytes = self.counters.bytes.load(Ordering::Relaxed);
        info!(
            records = self.counters.records.load(Ordering::Relaxed),
            spool_pending = pending,
            spool_shed = self.counters.shed.load(Ordering::Relaxed),
            "delivery stopped{}",
            if pending > 0 {
                "; spooled records go out at the next start"
            } else {
                ""
            }
        );
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests;
