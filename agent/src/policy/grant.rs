//! The rule side of a grant: what it lets its user debug, and whether it
//! covers a target. The engine consults grants through
//! [`super::GrantLookup`]; the store and the control socket that create
//! and expire them live in `crate::grants`.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use super::access::{AccessMode, BadMode};
use super::event::Target;

/// A grant target that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad grant target `{0}`: expected unit:NAME, pid:N, exe:/PATH or any")]
pub struct BadTarget(pub String);

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
    type Err = BadTarget;

    fn from_str(s: &str) -> Result<Self, BadTarget> {
        let bad = || BadTarget(s.to_owned());
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
    type Error = BadTarget;

    fn try_from(s: String) -> Result<Self, BadTarget> {
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
    /// `read` or `full` (a grant from before modes was full).
    #[serde(default)]
    pub mode: AccessMode,
    pub reason: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// For a `pid:N` grant: when that process started, in clock ticks since
    /// boot, taken when the grant was made. The grant covers that process
    /// only, never a later one that reuses the pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_tick: Option<u64>,
}

impl Grant {
    /// Whether this grant covers `target` (see [`GrantTarget::covers`]),
    /// holding a pid grant to the process it was made for.
    pub fn covers(&self, target: Option<&Target>) -> bool {
        if !self.target.covers(target) {
            return false;
        }
        match (&self.target, self.start_tick, target) {
            (GrantTarget::Pid(_), Some(start), Some(t)) => {
                let tick = crate::sys::host::tick_ns().max(1);
                t.start_ns.is_some_and(|ns| ns / tick == start)
            }
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
