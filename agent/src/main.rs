//! `debugmon`: command line entry point. Exit codes: 0 ok, 1 runtime error,
//! 2 usage error.

use std::process::ExitCode;

use agent::{Config, ebpf::loader::error_chain, telemetry};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "debugmon",
    version,
    about = "Watches debugging on production Linux hosts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trace exec, fork and exit in the kernel and write one JSON record per line to stdout
    Run {
        /// Kernel ring buffer size in MiB (power of two)
        #[arg(long, default_value_t = 8, value_parser = parse_ring_mib)]
        ring_mib: u32,
        /// Ancestry levels recorded per actor
        #[arg(long, default_value_t = 16)]
        ancestry_depth: usize,
        /// Seconds over which repeated accesses (PEEK/POKE, process_vm_*) are counted into one record
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        aggregate_window_secs: u64,
        /// Observe only: do not enforce deny rules or protect the agent
        #[arg(long)]
        no_enforce: bool,
    },
}

fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if !v.is_power_of_two() || v > 1024 {
        return Err("must be a power of two between 1 and 1024".into());
    }
    Ok(v)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    match cli.command {
        Command::Run {
            ring_mib,
            ancestry_depth,
            aggregate_window_secs,
            no_enforce,
        } => {
            let cfg = Config {
                ring_bytes: ring_mib * 1024 * 1024,
                ancestry_depth,
                aggregate_window: std::time::Duration::from_secs(aggregate_window_secs),
                enforce: !no_enforce,
                ..Config::default()
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::from(1);
                }
            };
            // The handlers must exist before the agent reports ready: a
            // signal that arrived earlier would take the default action
            // and kill the agent without draining.
            let run = async {
                let shutdown = shutdown_signal()?;
                Ok::<_, agent::AgentError>(agent::run(&cfg, shutdown).await)
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
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that
/// completes on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, agent::AgentError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(agent::AgentError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(agent::AgentError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
