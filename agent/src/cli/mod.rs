//! The command line: one module per subcommand, each with its flags
//! (`Args`) and its `main`, which returns the exit code: 0 ok, 1 runtime
//! error (or problems found), 2 usage or configuration error. `main.rs`
//! only parses and dispatches.
//!
//! - [`run`]: the agent itself
//! - [`verify`], [`tail`]: reading sealed records back ([`nats`]: the
//!   connection flags they share); [`key`]: the host keys `verify` trusts;
//!   [`review`]: security's filtered, verified view and summaries
//! - [`policy`], [`grant`], [`approve`]: engineers' and security's
//!   commands around policy, time-boxed access and its approval
//! - [`inventory`]: security's view of the host's debug exposure now
//! - [`status`], [`config`]: ops' view of the running agent and its config
//! - [`logging`]: where the agent's own log goes
//! - [`gendocs`]: man pages and shell completions from these definitions

pub mod approve;
pub mod config;
pub mod gendocs;
pub mod grant;
pub mod inventory;
pub mod key;
pub mod logging;
pub mod nats;
pub mod policy;
pub mod review;
pub mod run;
pub mod status;
pub mod tail;
pub mod verify;

use std::{io::Write as _, path::Path, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    config::{self as cfg, Config, ConfigSource, Flag},
    sys::env::ProcessEnv,
};

#[derive(Parser)]
#[command(
    name = "debugmon",
    version,
    about = "Watches debugging on production Linux hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Watch debugging: trace in the kernel, decide by policy, enforce, write JSON records
    Run(run::Args),
    /// Check sealed records (hash chain, signatures, gaps, duplicates); exit 1 on any problem
    Verify(verify::Args),
    /// Show this host's public key, or add a host's key to the trusted-keys file verify uses
    Key {
        #[command(subcommand)]
        command: key::Command,
    },
    /// Follow records from the JetStream stream
    Tail(tail::Args),
    /// Review past records, verified as read: filters, sessions, summaries (who, denials, grants, hosts)
    Review(Box<review::Args>),
    /// Check policy files, or explain which rule decides a record
    Policy {
        #[command(subcommand)]
        command: policy::Command,
    },
    /// Ask for, list or revoke time-boxed access (root, over the control socket)
    Grant(grant::Args),
    /// Approve a host's grant request with an approver key, or list open requests (over NATS)
    Approve(Box<approve::Args>),
    /// Configuration commands
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Show the running agent's status (from its metrics endpoint)
    Status(status::Args),
    /// The host's debug exposure now: debuggers installed, traced processes, debug ports, injection, kernel settings
    Inventory(inventory::Args),
    /// Write the man pages and shell completions (used by packaging)
    #[command(hide = true)]
    GenerateDocs(gendocs::Args),
}

/// Writes `text` to stdout; a closed pipe (`| head`) is an error, not a panic.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("debugmon: writing to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// Loads the configuration, or prints why not (exit 2).
fn load_config(path: Option<&Path>, flags: &[Flag]) -> Result<(Config, ConfigSource), ExitCode> {
    cfg::load(path, &ProcessEnv, flags).map_err(|e| {
        eprintln!("debugmon: invalid configuration:\n{e}");
        ExitCode::from(2)
    })
}

/// A runtime for a command that talks to a server or socket.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("debugmon: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}
