//! The access mode of a grant or a role's exemption: `read` lets its
//! holder look at a target, `full` also change it.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much a grant or a role's exemption lets its holder do.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AccessMode {
    /// Look, not change: attach, read memory and registers, backtraces,
    /// strace, perf, gcore. Never a write into the target's memory or
    /// registers, a descriptor taken from it, or EXITKILL.
    Read,
    /// Everything the rule would deny. The default: a policy or grant
    /// from before modes keeps its meaning.
    #[default]
    Full,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Full => "full",
        }
    }

    /// Whether it covers an action that changes the target (`writes`).
    pub fn covers(self, writes: bool) -> bool {
        !writes || self == Self::Full
    }
}

impl FromStr for AccessMode {
    type Err = BadMode;

    fn from_str(s: &str) -> Result<Self, BadMode> {
        match s {
            "read" => Ok(Self::Read),
            "full" => Ok(Self::Full),
            _ => Err(BadMode(s.to_owned())),
        }
    }
}

/// An access mode that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad access mode `{0}`: expected read or full")]
pub struct BadMode(pub String);
