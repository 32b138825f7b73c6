//! `debugmon config check`: the effective configuration (file, then
//! `DEBUGMON_*` environment overrides), secrets masked, or every error with
//! its location.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

use super::{load_config, print};

#[derive(Subcommand)]
pub enum Command {
    /// Check the config file (with DEBUGMON_* overrides) and print the effective configuration
    /// (exit 2 with file:line:column on errors)
    Check {
        /// Config file [default: /etc/debugmon/config.toml; built-in defaults if it is absent]
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn main(command: Command) -> ExitCode {
    let Command::Check { config } = command;
    let (cfg, source) = match load_config(config.as_deref(), &[]) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cfg.to_toml() {
        Ok(text) => print(&format!(
            "# effective configuration from {source}, secrets masked\n{text}"
        )),
        Err(e) => {
            eprintln!("debugmon: printing the configuration: {e}");
            ExitCode::from(1)
        }
    }
}
