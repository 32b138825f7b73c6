//! When the agent reads the ring buffer. On a quiet host it sleeps until
//! the kernel wakes it and reads at once; while events keep flowing it
//! reads on its own timer ([`super::read_timer`]), every
//! `agent.read_interval_ms` (the linger), and asks for no wake-ups,
//! because a wake-up is an IPI sent from the traced process (several
//! microseconds per exec in a VM, more than the rest of the exec
//! program). A read that finds nothing sends it back to sleep: it sets the
//! kernel's `READER_IDLE` flag, reads once more (events committed before
//! the kernel saw the flag woke nobody), and checks once more after
//! [`SETTLE`] in case an event was still being written during that read.
//! The kernel side is `wake_if_idle`.

use std::time::Duration;

use tokio::time::Instant;

/// Default time between reads while events flow (the linger): events
/// gather meanwhile, so a batch shares one signature and one write. Bounds
/// the added latency. Longer lingers make bigger batches and cost less CPU
/// per event (BENCHMARKS.md has the measured trade). 2 ms is what the
/// default of 1 ms gave in practice while tokio's timer kept the reads
/// (it rounded each up to the next whole millisecond after it); the read
/// timer is precise since, and 1 ms now reads twice as often.
pub const DEFAULT_READ_INTERVAL_MS: u64 = 2;
/// After going back to sleep, one more read this much later.
pub const SETTLE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Waiting for the kernel's wake-up; with `settle`, also for one read
    /// at that time.
    Waiting { settle: Option<Instant> },
    /// Reading on the agent's own timer, next at `at`.
    Polling { at: Instant },
}

/// What the read loop does after a timed read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Mode(ReadMode),
    /// Set `READER_IDLE`, read once more, then wait with a settle read.
    Sleep,
}

impl ReadMode {
    /// At start-up the agent waits (and has set `READER_IDLE`).
    pub const START: Self = Self::Waiting { settle: None };

    pub fn waits_for_wake(&self) -> bool {
        matches!(self, Self::Waiting { .. })
    }

    /// When the next timed read is due, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        match *self {
            Self::Waiting { settle } => settle,
            Self::Polling { at } => Some(at),
        }
    }

    /// The kernel woke the agent (which read at once): next read after
    /// letting events gather for `linger`.
    pub fn woken(now: Instant, linger: Duration) -> Self {
        Self::Polling { at: now + linger }
    }

    /// After going to sleep: wait, with one settle read.
    pub fn asleep(now: Instant) -> Self {
        Self::Waiting {
            settle: Some(now + SETTLE),
        }
    }

    /// After a timed read that handled `handled` events and `emptied` the
    /// ring (false: it stopped at its batch limit, more is queued).
    pub fn after_read(self, handled: u64, emptied: bool, now: Instant, linger: Duration) -> Step {
        match self {
            _ if !emptied => Step::Mode(Self::Polling { at: now }),
            _ if handled > 0 => Step::Mode(Self::Polling { at: now + linger }),
            Self::Polling { .. } => Step::Sleep,
            Self::Waiting { .. } => Step::Mode(Self::Waiting { settle: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(DEFAULT_READ_INTERVAL_MS);

    #[test]
    fn polls_while_events_flow_and_sleeps_after_an_empty_read() {
        let t = Instant::now();
        let m = ReadMode::woken(t, LINGER);
        assert_eq!(m.deadline(), Some(t + LINGER));
        assert!(!m.waits_for_wake());
        // Events came: read again after the linger, no wake-up needed.
        let Step::Mode(m) = m.after_read(3, true, t, LINGER) else {
            panic!("kept polling")
        };
        assert_eq!(m, ReadMode::Polling { at: t + LINGER });
        // A backlog: read again at once.
        assert_eq!(
            m.after_read(1000, false, t, LINGER),
            Step::Mode(ReadMode::Polling { at: t })
        );
        // Nothing in a whole linger: back to sleep.
        assert_eq!(m.after_read(0, true, t, LINGER), Step::Sleep);
    }

    #[test]
    fn asleep_reads_once_more_then_waits_only_for_the_kernel() {
        let t = Instant::now();
        let m = ReadMode::asleep(t);
        assert!(m.waits_for_wake());
        assert_eq!(m.deadline(), Some(t + SETTLE));
        // The settle read found nothing: no more timed reads.
        let Step::Mode(w) = m.after_read(0, true, t, LINGER) else {
            panic!("stays waiting")
        };
        assert_eq!(w, ReadMode::START);
        assert_eq!(w.deadline(), None);
        // The settle read found a straggler: poll, events may be flowing.
        assert_eq!(
            m.after_read(1, true, t, LINGER),
            Step::Mode(ReadMode::Polling { at: t + LINGER })
        );
    }

    #[test]
    fn a_longer_read_interval_spaces_the_reads_while_events_flow() {
        let (t, linger) = (Instant::now(), Duration::from_millis(8));
        let m = ReadMode::woken(t, linger);
        assert_eq!(m.deadline(), Some(t + linger));
        assert_eq!(
            m.after_read(5, true, t, linger),
            Step::Mode(ReadMode::Polling { at: t + linger })
        );
        // A backlog is still read at once, and a quiet ring still sleeps.
        assert_eq!(
            m.after_read(5, false, t, linger),
            Step::Mode(ReadMode::Polling { at: t })
        );
        assert_eq!(m.after_read(0, true, t, linger), Step::Sleep);
    }
}
