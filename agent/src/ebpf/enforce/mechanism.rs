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

/// One part of enforcement and how this mechanism carries it out, for
/// the start record: a reader learns what "enforced" will mean here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Part {
    pub part: &'static str,
    pub how: &'static str,
}

const fn part(part: &'static str, how: &'static str) -> Part {
    Part { part, how }
}

/// Kills that no mechanism here can turn into a refusal (BPF fmod_ret on
/// syscalls is not used): the same under both.
const WRITE_THROUGH_MEM: Part = part(
    "write through an open /proc/PID/mem",
    "kill: the actor dies as it locks the target's memory, before the write lands",
);
const PTRACE_WRITES: Part = part(
    "ptrace request that changes the tracee (POKE*, SET*REGS*, SETSIGINFO, SYSEMU, EXITKILL, KILL)",
    "kill: a memory write is stopped before it lands; a register or signal-state write lands \
     as the tracer dies",
);

impl Mechanism {
    /// How each part of enforcement is carried out (docs/threat-model.md
    /// "Read-only access").
    pub fn parts(self) -> Vec<Part> {
        match self {
            Self::Lsm => vec![
                part(
                    "attach (ptrace attach and seize, process_vm_*, /proc/PID/mem open, pidfd_getfd)",
                    "lsm: refused with EPERM in ptrace_access_check",
                ),
                part(
                    "process_vm_writev, pidfd_getfd and EXITKILL under read-only access",
                    "lsm: refused with EPERM in ptrace_access_check, which the syscall names",
                ),
                part(
                    "/proc/PID/mem opened for writing under read-only access",
                    "allowed: debuggers open it read-write to read through it; each write is \
                     judged as it happens",
                ),
                WRITE_THROUGH_MEM,
                PTRACE_WRITES,
                part(
                    "exec of a denied program",
                    "lsm: refused in bprm_check_security",
                ),
                part(
                    "perf_event_open, bpf(PROG_LOAD)",
                    "lsm: refused in perf_event_open, bpf",
                ),
            ],
            Self::Kill => vec![
                part(
                    "attach (ptrace attach and seize, process_vm_*, /proc/PID/mem open, pidfd_getfd)",
                    "kill: the actor dies at the syscall's return, or as it locks the target's \
                     memory, before a byte moves",
                ),
                part(
                    "process_vm_writev, pidfd_getfd and EXITKILL under read-only access",
                    "kill: as for attach",
                ),
                part(
                    "/proc/PID/mem opened for writing under read-only access",
                    "allowed: reads through it pass, each write is judged as it happens",
                ),
                WRITE_THROUGH_MEM,
                PTRACE_WRITES,
                part(
                    "exec of a denied program",
                    "not enforced: recorded and alerted; what the program then does to a \
                     protected process meets the parts above",
                ),
                part(
                    "perf_event_open, bpf(PROG_LOAD)",
                    "kill: at the syscall's return",
                ),
            ],
            Self::Off => vec![part("everything", "recorded and alerted, not enforced")],
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
