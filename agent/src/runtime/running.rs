//! The started agent as the run loop sees it: the ring, the pipeline, the
//! sink, governance, the kernel's counters, and the timers it waits on.
//! Its methods live with the work they do: [`super::start`],
//! [`super::ring`], [`super::housekeeping`], [`super::shutdown`].

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{Signal, SignalKind, signal},
    sync::watch,
    time::{Interval, MissedTickBehavior},
};

use super::{
    AgentError, counters::Kernel, governance::Governance, heartbeat::Cadence, pipeline::Pipeline,
    read_timer::ReadTimer, reader::ReadMode,
};
use crate::{
    metrics::{Metrics, http::Serving},
    sink::Delivery,
    sys::notify::{Notifier, Watchdog},
};

/// The timers and signals the run loop waits on besides the ring.
pub(super) struct Timers {
    /// Once a second: lost counts, reaping, grants, reloads, metrics.
    pub(super) tick: Interval,
    /// Once per aggregate window: repeated accesses.
    pub(super) window: Interval,
    pub(super) window_len: Duration,
    /// SIGHUP: reload the configuration and the policy now.
    pub(super) hup: Signal,
}

/// A started agent: everything the run loop and the stop sequence use.
pub(super) struct Running {
    pub(super) ring: AsyncFd<RingBuf<MapData>>,
    pub(super) reader: ReadMode,
    /// When the next timed read is due, for the kernel.
    pub(super) read_timer: ReadTimer,
    /// `agent.read_interval_ms`: time between reads while events flow.
    pub(super) read_interval: Duration,
    pub(super) timers: Timers,
    pub(super) kernel: Kernel,
    pub(super) p: Pipeline,
    pub(super) sink: Delivery,
    pub(super) gov: Governance,
    pub(super) metrics: Arc<Metrics>,
    pub(super) notifier: Arc<Notifier>,
    /// Programs attached, for the status line.
    pub(super) programs: usize,
    /// Events handled at the last status line.
    pub(super) last_events: u64,
    /// NATS message-id collisions already reported in an alert record.
    pub(super) collisions_reported: u64,
    /// When heartbeat records are due; `None`: heartbeats are off.
    pub(super) heartbeat: Option<Cadence>,
    /// When the next inventory is due; `None`: inventories are off.
    pub(super) inventory: Option<Cadence>,
    /// Tells the control socket to stop serving.
    pub(super) stop_control: watch::Sender<bool>,
    pub(super) _serving: Option<Serving>,
    pub(super) _watchdog: Option<Watchdog>,
    /// What SIGHUP reads again besides the policy.
    pub(super) reload: Option<Arc<Mutex<dyn super::Reloader>>>,
    /// Forwards the kernel programs' log (`--kernel-log`) while held.
    pub(super) _kernel_log: Option<crate::ebpf::kernel_log::Reading>,
}

impl Timers {
    pub(super) fn new(aggregate_window: Duration) -> Result<Self, AgentError> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let window_len = aggregate_window.max(Duration::from_secs(1));
        let window = tokio::time::interval_at(tokio::time::Instant::now() + window_len, window_len);
        let hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;
        Ok(Self {
            tick,
            window,
            window_len,
            hup,
        })
    }
}
