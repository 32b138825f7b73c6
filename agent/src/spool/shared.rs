//! The spool shared by the record producer (append, flush) and the NATS
//! sink task (peek, ack): a mutex around the [`Spool`] plus a wake-up for
//! the sink when new entries became durable.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::sync::Notify;

use super::{Spool, SpoolError};
use crate::record::seal::Sealed;

#[derive(Debug, Clone)]
pub struct SharedSpool {
    inner: Arc<Mutex<Spool>>,
    flushed: Arc<Notify>,
}

impl SharedSpool {
    pub fn new(spool: Spool) -> Self {
        Self {
            inner: Arc::new(Mutex::new(spool)),
            flushed: Arc::new(Notify::new()),
        }
    }

    /// Locks the spool. File I/O happens under this lock: call it from a
    /// blocking context (a thread or `spawn_blocking`) when it may fsync.
    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        // A panic while holding the lock leaves the spool's files
        // consistent (every write is framed), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends and flushes a batch under one lock, then wakes the sink.
    pub fn append_batch(&self, records: &[Sealed]) -> Result<(), SpoolError> {
        {
            let mut spool = self.lock();
            for r in records {
                spool.append(r)?;
            }
            spool.flush()?;
        }
        self.notify_flushed();
        Ok(())
    }

    /// Wakes the sink after the caller flushed through [`Self::lock`].
    pub fn notify_flushed(&self) {
        self.flushed.notify_one();
    }

    /// Waits for a flush notice or `timeout`, whichever comes first.
    pub async fn wait_flushed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.flushed.notified()).await;
    }
}
