//! `debugmon run`: the agent. Its settings come from the config file, the
//! `DEBUGMON_*` environment and these flags (flags win); it runs until
//! SIGINT or SIGTERM, then drains and exits 0. SIGHUP reloads the
//! configuration (its `[policy]` at once, other sections on restart) and
//! the policy; one that does not load is rejected and the running one stays.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, Mutex},
};

use super::{load_config, logging};
use crate::{
    config::{Flag, reload::ConfigReload},
    error::error_chain,
    runtime::{self, AgentError, Settings},
};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Config file [default: /etc/debugmon/config.toml; built-in defaults if it is absent]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kernel ring buffer size in MiB, a power of two [config: agent.ring_mib]
    #[arg(long)]
    pub ring_mib: Option<u32>,
    /// Milliseconds between ring reads while events flow: longer costs less CPU per event and
    /// delays records more [config: agent.read_interval_ms]
    #[arg(long)]
    pub read_interval_ms: Option<u64>,
    /// Ancestry levels recorded per actor [config: agent.ancestry_depth]
    #[arg(long)]
    pub ancestry_depth: Option<usize>,
    /// Seconds over which repeated accesses (PEEK/POKE, process_vm_*) are counted into one
    /// record [config: agent.aggregate_window_secs]
    #[arg(long)]
    pub aggregate_window_secs: Option<u64>,
    /// address:port of /metrics and /status; port 0 picks one, "" disables [config: metrics.listen]
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// How stdout and the file sink write records: json (sealed records) or ecs (ECS
    /// documents with the sealed record under `debugmon`) [config: sinks.format]
    #[arg(long, value_name = "FORMAT", value_parser = ["json", "ecs"])]
    pub format: Option<String>,
    /// Observe only: do not enforce deny rules or protect the agent
    #[arg(long)]
    pub no_enforce: bool,
    /// Log each failure inside the kernel programs (site, thread, error) [config: agent.kernel_log]
    #[arg(long)]
    pub kernel_log: bool,
    /// Policy directory (repeatable; replaces [policy] dirs of the config)
    #[arg(long = "policies", value_name = "DIR")]
    pub policies: Vec<PathBuf>,
}

/// The flags that override config keys, as the config loader takes them.
fn overrides(a: &Args) -> Vec<Flag> {
    [
        (
            "agent.ring_mib",
            "--ring-mib",
            a.ring_mib.map(|v| v.to_string()),
        ),
        (
            "agent.read_interval_ms",
            "--read-interval-ms",
            a.read_interval_ms.map(|v| v.to_string()),
        ),
        (
            "agent.ancestry_depth",
            "--ancestry-depth",
            a.ancestry_depth.map(|v| v.to_string()),
        ),
        (
            "agent.aggregate_window_secs",
            "--aggregate-window-secs",
            a.aggregate_window_secs.map(|v| v.to_string()),
        ),
        (
            "metrics.listen",
            "--metrics-listen",
            a.metrics_listen.clone(),
        ),
        ("sinks.format", "--format", a.format.clone()),
    ]
    .into_iter()
    .filter_map(|(key, flag, v)| {
        Some(Flag {
            key,
            flag,
            value: v?,
        })
    })
    .collect()
}

/// Loads the configuration for `run`, starts logging as `[log]` says, and
/// returns the agent's settings.
pub fn settings(a: &Args) -> Result<Settings, ExitCode> {
    let flags = overrides(a);
    let (cfg, source) = load_config(a.config.as_deref(), &flags)?;
    logging::init_with(&cfg.log);
    tracing::info!("configuration: {source}");
    let mut s = cfg.to_settings().map_err(|e| {
        eprintln!("debugmon: invalid configuration: {}", error_chain(&e));
        ExitCode::from(2)
    })?;
    if a.no_enforce {
        s.enforce = false;
    }
    if a.kernel_log {
        s.kernel_log = true;
    }
    if !a.policies.is_empty() {
        s.policy_dirs.clone_from(&a.policies);
    }
    // SIGHUP reads the same sources again.
    s.reload = Some(Arc::new(Mutex::new(ConfigReload {
        path: a.config.clone(),
        flags,
        policy_dirs_pinned: !a.policies.is_empty(),
        running: cfg,
    })));
    Ok(s)
}

pub fn main(args: Args) -> ExitCode {
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // One thread drives the ring buffer, the timers and the I/O: with a
    // worker thread beside it every ring wake-up cost two context switches
    // (the worker polls epoll, then wakes this thread). Sealing and
    // spooling have their own thread.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    // The handlers must exist before the agent reports ready: a signal that
    // arrived earlier would take the default action and kill the agent
    // without draining.
    let run = async {
        let shutdown = shutdown_signal()?;
        Ok::<_, AgentError>(runtime::run(&settings, shutdown).await)
    };
    match rt.block_on(run).and_then(|r| r) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let chain = error_chain(&e);
            tracing::error!("{chain}");
            if chain.contains("Operation not permitted") {
                tracing::error!(
                    "debugmon needs root (or CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE) to load its programs"
                );
            }
            ExitCode::from(1)
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that
/// completes on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, AgentError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
