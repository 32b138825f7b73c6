//! Just-in-time grants (DESIGN.md "Policy"): a user may debug a target for
//! a bounded time, e.g. `debugmon grant --user alice --target
//! unit:payments.service --for 30m --reason INC-1234`.
//!
//! - [`Grant`], [`GrantTarget`], [`parse_duration`]: the data
//! - [`store`]: persisted grants with expiry and an injectable clock
//! - [`control`]: the root-only control socket (server and client)

pub mod control;
pub mod store;

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use self::store::{Clock, GrantStore, ManualClock, SystemClock};
use crate::policy::event::Target;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("bad grant target `{0}`: expected unit:NAME, pid:N, exe:/PATH or any")]
    BadTarget(String),
    #[error("bad duration `{0}`: expected e.g. 90s, 30m, 2h or 1h30m")]
    BadDuration(String),
    #[error("grant of {requested} refused: longer than the maximum of {max}")]
    TooLong { requested: String, max: String },
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("no active grant with id `{0}`")]
    UnknownGrant(String),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        io_error: std::io::Error,
    },
    #[error("grant file {path} is not valid")]
    Corrupt {
        path: String,
        #[source]
        json_error: serde_json::Error,
    },
}

/// What a grant lets its user debug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GrantTarget {
    /// Every process of a systemd unit (survives restarts of the service).
    Unit(String),
    Pid(u32),
    /// Processes running this executable.
    Exe(String),
    Any,
}

impl FromStr for GrantTarget {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, GrantError> {
        let bad = || GrantError::BadTarget(s.to_owned());
        if s == "any" {
            return Ok(Self::Any);
        }
        let (kind, v) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "unit" if !v.is_empty() => Ok(Self::Unit(v.to_owned())),
            "pid" => v.parse().map(Self::Pid).map_err(|_| bad()),
            "exe" if v.starts_with('/') => Ok(Self::Exe(v.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for GrantTarget {
    type Error = GrantError;

    fn try_from(s: String) -> Result<Self, GrantError> {
        s.parse()
    }
}

impl From<GrantTarget> for String {
    fn from(t: GrantTarget) -> String {
        t.to_string()
    }
}

impl fmt::Display for GrantTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unit(u) => write!(f, "unit:{u}"),
            Self::Pid(p) => write!(f, "pid:{p}"),
            Self::Exe(e) => write!(f, "exe:{e}"),
            Self::Any => f.write_str("any"),
        }
    }
}

impl GrantTarget {
    /// Whether this grant covers `target`. An action without a target (the
    /// exec of a debugger) is covered by any grant: the grant lets its user
    /// start the debugger, and the attach is checked against the target.
    pub fn covers(&self, target: Option<&Target>) -> bool {
        let Some(t) = target else { return true };
        match self {
            Self::Any => true,
            Self::Unit(u) => t.unit.as_deref() == Some(u),
            Self::Pid(p) => t.pid == Some(*p),
            Self::Exe(e) => t.exe.as_deref() == Some(e),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub user: String,
    pub target: GrantTarget,
    pub reason: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEvent {
    pub event: GrantEventKind,
    pub grant: Grant,
}

/// `90s`, `30m`, `2h`, `1h30m`, `1d`: one or more number+unit parts.
pub fn parse_duration(s: &str) -> Result<Duration, GrantError> {
    let bad = || GrantError::BadDuration(s.to_owned());
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
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

    #[test]
    fn targets_parse_and_cover() {
        let unit: GrantTarget = "unit:pg.service".parse().unwrap();
        assert_eq!(unit.to_string(), "unit:pg.service");
        assert_eq!(
            "pid:77".parse::<GrantTarget>().unwrap(),
            GrantTarget::Pid(77)
        );
        assert!("exe:relative".parse::<GrantTarget>().is_err());
        assert!("pid:x".parse::<GrantTarget>().is_err());
        assert!("host:x".parse::<GrantTarget>().is_err());
        let t = Target {
            pid: Some(77),
            unit: Some("pg.service".into()),
            exe: Some("/usr/bin/pg".into()),
            ..Target::default()
        };
        assert!(unit.covers(Some(&t)));
        assert!(GrantTarget::Pid(77).covers(Some(&t)));
        assert!(!GrantTarget::Pid(78).covers(Some(&t)));
        assert!(GrantTarget::Exe("/usr/bin/pg".into()).covers(Some(&t)));
        assert!(!GrantTarget::Unit("other".into()).covers(Some(&t)));
        assert!(GrantTarget::Unit("other".into()).covers(None));
    }
}
