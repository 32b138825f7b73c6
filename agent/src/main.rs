//! `debugmon`: command line entry point. Exit codes: 0 ok, 1 runtime error,
//! 2 usage error.

use std::{path::PathBuf, process::ExitCode};

use agent::{
    cli_governance,
    commands::{
        self, RunFlags,
        trust::{NatsFlags, TailFlags, VerifyFlags},
    },
    ebpf::loader::error_chain,
    grants::control::Request,
};
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
    /// Watch debugging: trace in the kernel, decide by policy, enforce, write JSON records
    Run {
        /// Config file [default: /etc/debugmon/config.toml; built-in defaults if it is absent]
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kernel ring buffer size in MiB, a power of two [config: agent.ring_mib]
        #[arg(long)]
        ring_mib: Option<u32>,
        /// Ancestry levels recorded per actor [config: agent.ancestry_depth]
        #[arg(long)]
        ancestry_depth: Option<usize>,
        /// Seconds over which repeated accesses (PEEK/POKE, process_vm_*) are counted into one
        /// record [config: agent.aggregate_window_secs]
        #[arg(long)]
        aggregate_window_secs: Option<u64>,
        /// address:port of /metrics and /status; port 0 picks one, "" disables [config: metrics.listen]
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Observe only: do not enforce deny rules or protect the agent
        #[arg(long)]
        no_enforce: bool,
        /// Policy directory (repeatable; replaces [policy] dirs of the config)
        #[arg(long = "policies", value_name = "DIR")]
        policies: Vec<PathBuf>,
    },
    /// Check sealed records (hash chain, signatures, gaps, duplicates); exit 1 on any problem
    #[command(group(clap::ArgGroup::new("source").required(true).args(["file", "stdin", "nats"])))]
    Verify {
        /// A file of records, one JSON object per line
        #[arg(long)]
        file: Option<PathBuf>,
        /// Records on standard input
        #[arg(long)]
        stdin: bool,
        /// Read the JetStream stream at this server URL
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// Subject to read from the stream [default: <nats.subject_prefix>.audit.>, debugmon.audit.>
        /// without --config]
        #[arg(long)]
        subject: Option<String>,
        /// First tokens of the records' subjects [default: nats.subject_prefix of the config, else
        /// debugmon]
        #[arg(long, value_name = "PREFIX")]
        subject_prefix: Option<String>,
        /// Trusted host public key (hex); repeatable [default: keys from the agent start records]
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// Config file whose [nats] section gives stream, TLS and credentials
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Follow records from the JetStream stream
    Tail {
        /// Alerts and denials (<nats.subject_prefix>.alert.>) instead of every record
        #[arg(long)]
        alerts: bool,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        severity: Option<String>,
        /// From this RFC 3339 time or this long ago (30s, 10m, 2h, 1d) [default: new records only]
        #[arg(long)]
        since: Option<String>,
        /// Raw JSON lines instead of one summary line per record
        #[arg(long)]
        json: bool,
        /// Stop after this many records
        #[arg(long)]
        limit: Option<u64>,
        /// First tokens of the records' subjects [default: nats.subject_prefix of the config, else
        /// debugmon]
        #[arg(long, value_name = "PREFIX")]
        subject_prefix: Option<String>,
        /// Server URL [default: nats.urls of the config, else nats://127.0.0.1:4222]
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// Config file whose [nats] section gives servers, stream, TLS and credentials
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check policy files, or explain which rule decides a record
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Ask for, list or revoke time-boxed access (root, over the control socket)
    Grant {
        /// User the grant is for
        #[arg(long)]
        user: Option<String>,
        /// unit:NAME | pid:N | exe:/PATH | any
        #[arg(long)]
        target: Option<String>,
        /// How long, e.g. 30m, 2h (at most the configured maximum)
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
        /// Why: a ticket or incident id
        #[arg(long)]
        reason: Option<String>,
        /// Control socket of the agent
        #[arg(long, default_value = "/run/debugmon/control.sock")]
        socket: PathBuf,
        #[command(subcommand)]
        command: Option<GrantCommand>,
    },
    /// Configuration commands
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Show the running agent's status (from its metrics endpoint)
    Status {
        /// Endpoint of the agent [default: http://<metrics.listen of the config>]
        #[arg(long)]
        url: Option<String>,
        /// Config file that names the endpoint when --url is not given
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the raw JSON report
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check files or directories; print file:line:column for every error (exit 2 on any)
    Check {
        #[arg(default_value = "/etc/debugmon/policies.d")]
        paths: Vec<PathBuf>,
    },
    /// Which rule decides the record in FILE, and why each other rule did not
    Explain {
        #[arg(long)]
        event: PathBuf,
        #[arg(
            long = "policies",
            value_name = "DIR",
            default_value = "/etc/debugmon/policies.d"
        )]
        policies: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GrantCommand {
    /// List active grants
    List,
    /// Revoke a grant by id
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the config file (with DEBUGMON_* overrides) and print the effective configuration
    /// (exit 2 with file:line:column on errors)
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { config },
        } => commands::config_check(config.as_deref()),
        Command::Status { url, config, json } => commands::status(url, config.as_deref(), json),
        Command::Verify {
            file,
            stdin,
            nats,
            subject,
            subject_prefix,
            keys,
            config,
            json,
        } => {
            agent::telemetry::init();
            commands::trust::verify(VerifyFlags {
                file,
                stdin,
                nats: NatsFlags {
                    url: nats,
                    config,
                    subject_prefix,
                },
                subject,
                keys,
                json,
            })
        }
        Command::Tail {
            alerts,
            host,
            kind,
            severity,
            since,
            json,
            limit,
            subject_prefix,
            nats,
            config,
        } => {
            agent::telemetry::init();
            commands::trust::tail(TailFlags {
                nats: NatsFlags {
                    url: nats,
                    config,
                    subject_prefix,
                },
                alerts,
                host,
                kind,
                severity,
                since,
                json,
                limit,
            })
        }
        Command::Policy {
            command: PolicyCommand::Check { paths },
        } => cli_governance::policy_check(&paths),
        Command::Policy {
            command: PolicyCommand::Explain { event, policies },
        } => cli_governance::policy_explain(&event, &policies),
        Command::Grant {
            user,
            target,
            duration,
            reason,
            socket,
            command,
        } => {
            let req = match command {
                Some(GrantCommand::List) => Request::List,
                Some(GrantCommand::Revoke { id }) => Request::Revoke { id },
                None => match (user, target, duration, reason) {
                    (Some(user), Some(target), Some(duration), Some(reason)) => Request::Grant {
                        user,
                        target,
                        duration,
                        reason,
                    },
                    _ => {
                        eprintln!(
                            "debugmon grant: --user, --target, --for and --reason are all required"
                        );
                        return ExitCode::from(2);
                    }
                },
            };
            cli_governance::grant_request(&socket, &req)
        }
        Command::Run {
            config,
            ring_mib,
            ancestry_depth,
            aggregate_window_secs,
            metrics_listen,
            no_enforce,
            policies,
        } => {
            let mut cfg = match commands::run_config(RunFlags {
                config,
                ring_mib,
                ancestry_depth,
                aggregate_window_secs,
                metrics_listen,
            }) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            if no_enforce {
                cfg.enforce = false;
            }
            if !policies.is_empty() {
                cfg.policy_dirs = policies;
            }
            // One thread drives the ring buffer, the timers and the I/O:
            // with a worker thread beside it every ring wake-up cost two
            // context switches (the worker polls epoll, then wakes this
            // thread). Sealing and spooling have their own thread.
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
