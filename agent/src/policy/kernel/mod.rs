//! The part of the policy the kernel can decide: deny rules whose target
//! conditions are comm, unit (cgroup), exe or uid, whose actor conditions are
//! uids (roles and users expanded), and that honour grants. Built by the
//! policy compiler ([`compile`]); consumed by the kernel's decision maps
//! (`crate::ebpf::enforce`).

mod compile;

pub use compile::kernel_policy;

use super::grant::AccessMode;

/// One deny rule in kernel form. `slot` is its index in the KRULES map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelRule {
    pub name: String,
    /// `agent_common::ops` bits.
    pub ops: u32,
    pub target_comms: Vec<String>,
    /// systemd units (`postgresql.service`); resolved to cgroup ids.
    pub target_units: Vec<String>,
    /// Exact executable paths of protected processes.
    pub target_exes: Vec<String>,
    pub target_uids: Vec<u32>,
    /// Actors (login uid, else uid) the rule does not apply to, and how
    /// far: a read-only role's members may look but not change.
    pub exempt: Vec<(u32, AccessMode)>,
    pub honor_grants: bool,
    /// Applies to the actor whatever the target (perf, bpf).
    pub actor_only: bool,
    /// Executables whose exec is denied (bprm_check_security).
    pub exec_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelPolicy {
    pub rules: Vec<KernelRule>,
}
