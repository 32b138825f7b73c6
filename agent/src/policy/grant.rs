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
    /// Who asked for the grant over the control socket (`None`: a grant
    /// from before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<Requester>,
    /// Who approved it, for a grant made from an approved request
    /// (`debugmon grant --request`, docs/review.md "Approvals").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<Approval>,
}

/// Who approved a grant: the request, the approver's name and key as the
/// host's config lists them, and when they signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub request: String,
    pub approver: String,
    /// Hex of the approver's public key.
    pub key: String,
    pub approved_at: DateTime<Utc>,
}

/// The peer that asked for a grant: its credentials from SO_PEERCRED, and
/// the login uid the kernel keeps for its session (`/proc/PID/loginuid`,
/// unchanged by sudo or su), so a grant made as root still names the
/// person who logged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// `None`: no login session (a daemon, or the pid was gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_user: Option<String>,
}

impl Requester {
    /// From the peer's credentials, reading its login uid and the user's
    /// name from `etc`/passwd.
    pub fn of_peer(uid: u32, pid: Option<i32>, etc: &std::path::Path) -> Self {
        let login_uid = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/loginuid")).ok())
            .and_then(|s| s.trim().parse::<u32>().ok())
            // (uid_t)-1: no login uid set.
            .filter(|&u| u != u32::MAX);
        let login_user = login_uid.and_then(|u| {
            crate::sys::users::UserDb::new(etc)
                .user(u)
                .map(str::to_owned)
        });
        Self {
            uid,
            pid,
            login_uid,
            login_user,
        }
    }
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

    /// A child whose login uid is set to `uid` (root may set a process's
    /// own login uid once), reaped by its pid.
    #[test]
    fn a_requester_names_the_login_user_behind_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: setting a login uid needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "alice:x:4321:4321::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("group"), "").unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo 4321 > /proc/$$/loginuid && exec sleep 30"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let r = loop {
            let r = Requester::of_peer(0, Some(pid), dir.path());
            if r.login_uid.is_some() || std::time::Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            r,
            Requester {
                uid: 0,
                pid: Some(pid),
                login_uid: Some(4321),
                login_user: Some("alice".into()),
            }
        );
        // A process without a login session (loginuid unset) names none.
        let gone = Requester::of_peer(0, Some(i32::MAX), dir.path());
        assert_eq!((gone.login_uid, gone.login_user), (None, None));
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
