//! `debugmon key`: this host's public key, and the trusted-keys file
//! `verify` checks hosts against (docs/records.md, "Trusted keys").
//!
//! - `key show`: prints `HOST HEXKEY` for this host (creating the host key
//!   on first use, as the agent would), a line ready for the file;
//! - `key add HOST HEXKEY`: binds a host's key in the file;
//! - `key trust-self`: adds this host's own key under its own name (what
//!   the package's post-install runs).

use std::{path::PathBuf, process::ExitCode};

use super::{load_config, print};
use crate::{
    error::error_chain,
    record::{
        seal::load_or_create_key,
        verify::{
            parse_key,
            trust::{DEFAULT_TRUSTED_KEYS, TrustedKeys},
        },
    },
    sys::host::Host,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print this host's name and public key (`HOST HEXKEY`)
    Show {
        /// Config file naming host.key_path
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Trust HEXKEY for HOST in the trusted-keys file (a key belongs to one host)
    Add {
        /// The host name its records carry (`host.name`)
        host: String,
        /// Its public key, as `debugmon key show` prints it on that host
        key: String,
        /// The trusted-keys file
        #[arg(long, value_name = "PATH", default_value = DEFAULT_TRUSTED_KEYS)]
        trusted_keys: PathBuf,
    },
    /// Trust this host's own key under its own name in the trusted-keys file
    TrustSelf {
        /// Config file naming host.key_path
        #[arg(long)]
        config: Option<PathBuf>,
        /// The trusted-keys file
        #[arg(long, value_name = "PATH", default_value = DEFAULT_TRUSTED_KEYS)]
        trusted_keys: PathBuf,
    },
}

pub fn main(c: Command) -> ExitCode {
    match c {
        Command::Show { config } => match own_key(config) {
            Ok((host, key)) => print(&format!("{host} {key}")),
            Err(code) => code,
        },
        Command::Add {
            host,
            key,
            trusted_keys,
        } => add(&trusted_keys, &host, &key),
        Command::TrustSelf {
            config,
            trusted_keys,
        } => match own_key(config) {
            Ok((host, key)) => add(&trusted_keys, &host, &key),
            Err(code) => code,
        },
    }
}

/// This host's name (as its records carry it) and hex public key.
fn own_key(config: Option<PathBuf>) -> Result<(String, String), ExitCode> {
    let (cfg, _) = load_config(config.as_deref(), &[])?;
    let key = load_or_create_key(&cfg.host.key_path).map_err(|e| {
        eprintln!("debugmon key: {}", error_chain(&e));
        ExitCode::from(1)
    })?;
    Ok((
        Host::detect().name,
        hex::encode(key.verifying_key().as_bytes()),
    ))
}

/// Adds `host key` to the file at `path` (created when absent).
fn add(path: &std::path::Path, host: &str, key: &str) -> ExitCode {
    if let Err(e) = parse_key(key) {
        eprintln!("debugmon key: {e}");
        return ExitCode::from(2);
    }
    let mut keys = match TrustedKeys::load(path) {
        Ok(k) => k.unwrap_or_default(),
        Err(e) => {
            eprintln!("debugmon key: {}", error_chain(&e));
            return ExitCode::from(1);
        }
    };
    match keys.add(host, key) {
        Ok(false) => print(&format!(
            "{host}: key already trusted in {}",
            path.display()
        )),
        Ok(true) => match keys.save(path) {
            Ok(()) => print(&format!("{host}: key trusted in {}", path.display())),
            Err(e) => {
                eprintln!("debugmon key: {}", error_chain(&e));
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("debugmon key: {e}");
            ExitCode::from(2)
        }
    }
}
