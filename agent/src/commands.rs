//! The ops subcommands behind `main.rs`: `debugmon config check`,
//! `debugmon status`, and turning `debugmon run`'s config file, environment
//! and flags into the driver's settings. Each returns the exit code
//! (0 ok, 1 runtime error, 2 usage or configuration error).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use crate::{
    config::{self, Config, ConfigSource, Flag, ProcessEnv},
    status, telemetry,
};

pub mod trust;

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
fn load(path: Option<&Path>, flags: &[Flag]) -> Result<(Config, ConfigSource), ExitCode> {
    config::load(path, &ProcessEnv, flags).map_err(|e| {
        eprintln!("debugmon: invalid configuration:\n{e}");
        ExitCode::from(2)
    })
}

/// `debugmon config check`: the effective configuration, secrets masked.
pub fn config_check(path: Option<&Path>) -> ExitCode {
    let (cfg, source) = match load(path, &[]) {
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

/// `debugmon status`: fetched from `url`, or from the endpoint the config names.
pub fn status(url: Option<String>, config_path: Option<&Path>, json: bool) -> ExitCode {
    let url = match url {
        Some(u) => u,
        None => match load(config_path, &[]) {
            Ok((cfg, _)) => match status::url_for(&cfg.metrics.listen) {
                Some(u) => u,
                None => {
                    eprintln!("debugmon: metrics.listen is empty (endpoint disabled); pass --url");
                    return ExitCode::from(2);
                }
            },
            Err(code) => return code,
        },
    };
    match status::fetch(&url, Duration::from_secs(5)) {
        Ok(r) if json => match serde_json::to_string_pretty(&r) {
            Ok(j) => print(&j),
            Err(e) => {
                eprintln!("debugmon: {e}");
                ExitCode::from(1)
            }
        },
        Ok(r) => print(&r.to_string()),
        Err(e) => {
            eprintln!("debugmon: status: {}", crate::ebpf::loader::error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// `debugmon run`'s flags that override config keys.
#[derive(Debug, Default)]
pub struct RunFlags {
    pub config: Option<PathBuf>,
    pub ring_mib: Option<u32>,
    pub ancestry_depth: Option<usize>,
    pub aggregate_window_secs: Option<u64>,
    pub metrics_listen: Option<String>,
}

/// Loads the configuration for `run`, starts logging as `[log]` says, and
/// returns the driver's settings.
pub fn run_config(f: RunFlags) -> Result<crate::agent::Config, ExitCode> {
    let flags: Vec<Flag> = [
        (
            "agent.ring_mib",
            "--ring-mib",
            f.ring_mib.map(|v| v.to_string()),
        ),
        (
            "agent.ancestry_depth",
            "--ancestry-depth",
            f.ancestry_depth.map(|v| v.to_string()),
        ),
        (
            "agent.aggregate_window_secs",
            "--aggregate-window-secs",
            f.aggregate_window_secs.map(|v| v.to_string()),
        ),
        ("metrics.listen", "--metrics-listen", f.metrics_listen),
    ]
    .into_iter()
    .filter_map(|(key, flag, v)| {
        Some(Flag {
            key,
            flag,
            value: v?,
        })
    })
    .collect();
    let (cfg, source) = load(f.config.as_deref(), &flags)?;
    telemetry::init_with(&cfg.log);
    tracing::info!("configuration: {source}");
    cfg.to_agent_config().map_err(|e| {
        eprintln!(
            "debugmon: invalid configuration: {}",
            crate::ebpf::loader::error_chain(&e)
        );
        ExitCode::from(2)
    })
}
