//! Logging: `tracing` to stderr (the journal under systemd), level from
//! RUST_LOG (default `info`, or `[log] level` with [`init_with`]). Records
//! go to stdout; logs never do.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, LogSection};

/// Logging as `[log]` says; RUST_LOG, when set, still wins (a developer's
/// override on a host whose config file says `info`).
pub fn init_with(log: &LogSection) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
