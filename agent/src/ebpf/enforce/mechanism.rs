//! Which enforcement mechanism this kernel allows, decided honestly: BPF-LSM
//! only when `bpf` is in the active LSM list *and* the programs load and
//! attach (a kernel without `bpf` in the list accepts the programs and then
//! enforces nothing); otherwise the syscall-entry SIGKILL fallback.

use std::{fs, io, path::Path};

use serde::Serialize;

pub const SECURITYFS: &str = "/sys/kernel/security";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// BPF-LSM hooks deny with -EPERM before the action happens.
    Lsm,
    /// The actor is killed at the syscall's entry (no BPF-LSM here).
    Kill,
    /// Enforcement disabled by configuration: observe only.
    Off,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lsm => "lsm",
            Self::Kill => "kill",
            Self::Off => "off",
        }
    }

    pub fn kernel_mode(self) -> u32 {
        match self {
            Self::Lsm => agent_common::enforce_mode::LSM,
            Self::Kill => agent_common::enforce_mode::KILL,
            Self::Off => agent_common::enforce_mode::OFF,
        }
    }
}

/// True when `bpf` is in the comma-separated active LSM list.
pub fn lsm_list_has_bpf(list: &str) -> bool {
    list.trim().split(',').any(|m| m == "bpf")
}

/// The active LSM list, mounting securityfs first when it is missing.
/// Returns the list and whether we mounted securityfs.
pub fn active_lsms() -> io::Result<(String, bool)> {
    let file = Path::new(SECURITYFS).join("lsm");
    if let Ok(s) = fs::read_to_string(&file) {
        return Ok((s, false));
    }
    crate::ebpf::tracefs::mount_pseudo_fs("securityfs", SECURITYFS)?;
    Ok((fs::read_to_string(file)?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_must_be_a_whole_entry() {
        assert!(lsm_list_has_bpf("lockdown,capability,landlock,bpf\n"));
        assert!(lsm_list_has_bpf("bpf"));
        assert!(!lsm_list_has_bpf("lockdown,capability,landlock"));
        assert!(!lsm_list_has_bpf("bpfilter,selinux"));
        assert!(!lsm_list_has_bpf(""));
    }
}
