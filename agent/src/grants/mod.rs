//! Just-in-time grants (policies/README.md "Grants"): a user may debug a
//! target for a bounded time, e.g. `debugmon grant --user alice --target
//! unit:payments.service --for 30m --reason INC-1234`.
//!
//! - [`Grant`], [`GrantTarget`] (what a grant covers, which the policy
//!   engine checks: [`crate::policy::grant`]), [`parse_duration`]
//! - [`store`]: persisted grants with expiry and an injectable clock
//! - [`seal`]: the grants file signed with the host key, checked on load
//! - [`control`]: the root-only control socket (server and client)
//! - [`approval`]: grants requested on a host and approved with an
//!   approver's key (signed requests and approvals, the open requests)

pub mod approval;
pub mod control;
pub mod seal;
pub mod store;

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub use self::{
    seal::GrantSigner,
    store::{Clock, FileRejection, GrantStore, ManualClock, SystemClock},
};
pub use crate::policy::grant::{
    AccessMode, Approval, BadMode, BadTarget, Grant, GrantTarget, Requester,
};

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    BadTarget(#[from] BadTarget),
    #[error(transparent)]
    BadMode(#[from] BadMode),
    #[error(transparent)]
    BadDuration(#[from] crate::duration::DurationError),
    #[error("bad duration `{0}`: a grant must last some time, e.g. 30m or 2h")]
    ZeroDuration(String),
    #[error("grant of {requested} refused: longer than the maximum of {max}")]
    TooLong { requested: String, max: String },
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("no process {0} to grant access to")]
    NoProcess(u32),
    #[error("process {0} is not the one the request named: the pid was reused since")]
    PidReused(u32),
    #[error("no active grant with id `{0}`")]
    UnknownGrant(String),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        io_error: std::io::Error,
    },
}

/// An I/O error on `path` while doing `what`, as a [`GrantError`].
pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GrantError {
    let path = path.display().to_string();
    move |io_error| GrantError::Io {
        what,
        path,
        io_error,
    }
}

/// Replaces the root-only file `path` with `body` so that a crash leaves
/// the old content or the new, never a mix or nothing: a temporary file
/// beside it (mode 0600), fsync'd, renamed over it, and the directory
/// fsync'd, since the rename is durable only once the directory entry is.
pub(crate) fn replace_file(path: &Path, body: &[u8]) -> Result<(), GrantError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let name = path
        .file_name()
        .map_or_else(|| "grants".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(body).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("fsync", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename into", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

/// Something that happened to a grant, for the caller to record as a
/// `grant` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantEventKind {
    Created,
    Used,
    Revoked,
    Expired,
    /// Found in the grants file on load but longer than the configured
    /// maximum (`grants.max_duration`): never used, removed from the file.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEvent {
    pub event: GrantEventKind,
    pub grant: Grant,
}

/// Start time (clock ticks since boot) of process `pid` now.
pub(crate) fn process_start(pid: u32) -> Result<u64, GrantError> {
    std::fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|b| crate::process::procfs::parse_stat(&b))
        .map(|s| s.start_ticks)
        .ok_or(GrantError::NoProcess(pid))
}

/// `90s`, `30m`, `2h`, `1h30m`, `1d` ([`crate::duration`], the grammar
/// the config and `tail --since` use too); a grant of no time is refused.
pub fn parse_duration(s: &str) -> Result<Duration, GrantError> {
    let d = crate::duration::parse(s)?;
    if d.is_zero() {
        return Err(GrantError::ZeroDuration(s.to_owned()));
    }
    Ok(d)
}

/// The inverse of [`parse_duration`] for messages: `4h`, `1h30m`, `90s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    for (v, u) in [(h, 'h'), (m, 'm'), (sec, 's')] {
        if v > 0 {
            out.push_str(&format!("{v}{u}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "30", "m", "0m", "3x", "-1h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }
}
