//! The running agent: start up ([`start`]), then move events from the ring
//! buffer through the [`pipeline`] to the sinks ([`ring`], paced by
//! [`reader`]), with the periodic work beside it ([`housekeeping`]: lost
//! counts, aggregates, grants, reloads, metrics, the [`heartbeat`]), until
//! told to stop; then
//! drain what the kernel already queued, detach and flush ([`shutdown`]).
//! Policy and grants change through [`governance`]; grant requests and
//! their approvals travel on NATS ([`approvals`]).

pub mod approvals;
mod counters;
pub mod governance;
mod heartbeat;
mod housekeeping;
pub mod pipeline;
mod read_timer;
pub mod reader;
mod ring;
mod running;
mod shutdown;
mod start;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use thiserror::Error;

use self::running::Running;
use crate::{
    ebpf::LoadError,
    record::LostCounts,
    sink::{DeliveryConfig, DeliveryError},
};

/// Settings of a run (from the config file, the environment and flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Kernel ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Time between ring reads while events flow ([`reader`]).
    pub read_interval: Duration,
    /// Ancestry levels per record.
    pub ancestry_depth: usize,
    /// Process table bound.
    pub table_max: usize,
    /// How long an exited process stays in the table for its children's records.
    pub exit_grace: Duration,
    /// Window over which repeated accesses (PEEK/POKE, process_vm_*) are counted.
    pub aggregate_window: Duration,
    /// Enforce deny rules and protect the agent when the kernel allows it.
    pub enforce: bool,
    /// The kernel programs log each counted failure (`--kernel-log`).
    pub kernel_log: bool,
    /// How often an `agent` heartbeat record goes out; `None`: never.
    pub heartbeat: Option<Duration>,
    /// How often an `inventory` (the host's debug exposure) is taken,
    /// besides at start; `None`: never.
    pub inventory: Option<Duration>,
    /// Policy directories (`*.yaml`, overlaid by file name), grants file, their longest
    /// duration, and the root-only control socket.
    pub policy_dirs: Vec<std::path::PathBuf>,
    pub grants_path: std::path::PathBuf,
    pub grants_max: Duration,
    pub control_socket: std::path::PathBuf,
    /// Grant requests approved centrally (`[grants]` approvers, two-person
    /// rule, request lifetime); taken only with NATS.
    pub approvals: approvals::ApprovalSettings,
    /// Where `/metrics` and `/status` are served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Sealing, spool, local sinks and NATS.
    pub delivery: DeliveryConfig,
    /// How SIGHUP reads the configuration again; `None`: it reloads only
    /// the policy, from `policy_dirs`.
    pub reload: Option<Arc<Mutex<dyn Reloader>>>,
}

/// Reads the configuration again on SIGHUP (the config module implements
/// it; the runtime only applies what it says).
pub trait Reloader: std::fmt::Debug + Send {
    /// The changes a reloaded configuration makes, or why it was rejected
    /// (the running configuration then stays).
    fn reload_config(&mut self) -> Result<Reloaded, String>;
}

/// What a configuration reload that loaded changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// New policy directories, when `[policy] dirs` changed.
    pub policy_dirs: Option<Vec<std::path::PathBuf>>,
    /// Sections that changed but take effect only on a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ring_bytes: agent_common::DEFAULT_RING_BYTES,
            read_interval: Duration::from_millis(reader::DEFAULT_READ_INTERVAL_MS),
            ancestry_depth: 16,
            table_max: 262_144,
            exit_grace: Duration::from_secs(10),
            aggregate_window: Duration::from_secs(5),
            enforce: true,
            kernel_log: false,
            heartbeat: Some(Duration::from_secs(5)),
            inventory: Some(Duration::from_secs(3600)),
            policy_dirs: crate::policy::DEFAULT_DIRS
                .map(std::path::PathBuf::from)
                .to_vec(),
            grants_path: std::path::PathBuf::from("/var/lib/debugmon/grants.json"),
            grants_max: Duration::from_secs(4 * 3600),
            control_socket: std::path::PathBuf::from("/run/debugmon/control.sock"),
            approvals: approvals::ApprovalSettings::default(),
            metrics_listen: None,
            delivery: DeliveryConfig::default(),
            reload: None,
        }
    }
}

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("loading the eBPF programs")]
    Load(#[from] LoadError),
    #[error("record delivery")]
    Sink(#[from] DeliveryError),
    #[error("polling the ring buffer")]
    Poll(#[source] std::io::Error),
    #[error("the timer of the ring reads (timerfd)")]
    ReadTimer(#[source] std::io::Error),
    #[error("setting the ring buffer's reader flag (READER_IDLE)")]
    ReaderFlag(#[source] aya::maps::MapError),
    #[error("installing the SIGINT/SIGTERM handlers")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Governance(#[from] governance::GovernanceError),
    #[error("loading the host key, which seals the grants file")]
    HostKey(#[from] crate::record::seal::SealError),
    #[error("opening the open grant requests")]
    Requests(#[from] crate::grants::GrantError),
}

/// What a finished run did.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub stats: pipeline::PipelineStats,
    pub lost: LostCounts,
}

/// Runs until `shutdown` completes. Startup errors are returned before any
/// record is written.
pub async fn run(
    cfg: &Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<RunSummary, AgentError> {
    let mut a = Running::start(cfg).await?;
    tokio::pin!(shutdown);
    loop {
        let deadline = a.reader.deadline();
        a.read_timer.set(deadline).map_err(AgentError::ReadTimer)?;
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            guard = a.ring.readable_mut(), if a.reader.waits_for_wake() => {
                // Readiness that came in after the guard was taken
                // survives `clear_ready`.
                guard.map_err(AgentError::Poll)?.clear_ready();
                a.on_wake().await?;
            }
            fired = a.read_timer.fired(), if deadline.is_some() => {
                fired.map_err(AgentError::ReadTimer)?;
                a.on_timed_read().await?;
            }
            _ = a.timers.tick.tick() => a.on_tick().await?,
            _ = a.timers.hup.recv() => a.on_hangup().await?,
            _ = a.timers.window.tick() => a.on_window().await?,
        }
    }
    a.stop().await
}
