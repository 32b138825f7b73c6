//! Reading the ring buffer: every event queued goes through the pipeline
//! and its records to the sink, in batches of bounded size. When to read is
//! [`super::reader`]'s decision; this is the reading.

use tokio::time::Instant;

use super::{
    AgentError,
    reader::{ReadMode, Step},
    running::Running,
};
use crate::sink::DeliveryError;

/// Batches larger than this are shipped mid-drain, bounding memory.
const MAX_BATCH: usize = 256 * 1024;
/// Batches per drain call before yielding to the timer.
const MAX_DRAIN_BATCHES: usize = 64;

impl Running {
    /// Moves queued events through the pipeline to the sink. Returns `true`
    /// when the ring buffer was emptied, `false` when it stopped after
    /// `MAX_DRAIN_BATCHES` so that the timer tick is not starved under load.
    pub(super) async fn drain(&mut self) -> Result<bool, DeliveryError> {
        let ring = self.ring.get_mut();
        for _ in 0..MAX_DRAIN_BATCHES {
            let mut full = false;
            while let Some(item) = ring.next() {
                self.p.handle(&item);
                drop(item); // releases the ring space before the await below
                if self.p.pending_bytes() >= MAX_BATCH {
                    full = true;
                    break;
                }
            }
            self.sink.send(self.p.take_records()).await?;
            if !full {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Asks the kernel to wake the agent at the next record-making event.
    pub(super) fn sleep_on_wake(&mut self) -> Result<(), AgentError> {
        self.kernel.sleep_on_wake()
    }

    /// The kernel woke the agent. Read at once: the kernel cleared
    /// READER_IDLE, so reading costs no further wake-up, and the waking
    /// event (a quiet host's record, or a protected process's fork the kill
    /// fallback must learn of) waits for nothing. Then poll while events
    /// flow.
    pub(super) async fn on_wake(&mut self) -> Result<(), AgentError> {
        self.metrics.ring_read(true);
        self.drain().await?;
        self.reader = ReadMode::woken(Instant::now(), self.read_interval);
        Ok(())
    }

    /// A read on the agent's own timer (polling under load, or the settle
    /// read after going back to sleep).
    pub(super) async fn on_timed_read(&mut self) -> Result<(), AgentError> {
        self.metrics.ring_read(false);
        let before = self.p.stats().events;
        let emptied = self.drain().await?;
        let handled = self.p.stats().events - before;
        let step = self
            .reader
            .after_read(handled, emptied, Instant::now(), self.read_interval);
        self.reader = match step {
            Step::Mode(m) => m,
            Step::Sleep => {
                self.sleep_on_wake()?;
                self.drain().await?;
                ReadMode::asleep(Instant::now())
            }
        };
        Ok(())
    }
}
