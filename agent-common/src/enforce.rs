//! The kernel's decision maps: compiled deny rules, exemptions, grants,
//! executables whose exec is denied, and the mechanism in force.

/// Enforcement mechanism in force, slot 0 of [`ENFORCE_MAP`](crate::ENFORCE_MAP).
pub mod enforce_mode {
    /// Observe only.
    pub const OFF: u32 = 0;
    /// BPF-LSM hooks deny with -EPERM.
    pub const LSM: u32 = 1;
    /// Syscall-entry SIGKILL of the actor (no BPF-LSM on this kernel).
    pub const KILL: u32 = 2;
}

/// Operations a kernel rule can deny (`KRule.ops` bits).
pub mod ops {
    /// ptrace attach/seize and every PTRACE_MODE_ATTACH access: process_vm_*,
    /// /proc/<pid>/mem, pidfd_getfd.
    pub const ATTACH: u32 = 1 << 0;
    /// PTRACE_TRACEME by a protected process (anti-debug).
    pub const TRACEME: u32 = 1 << 1;
    /// exec of a listed binary (bprm_check_security).
    pub const EXEC: u32 = 1 << 2;
    /// perf_event_open by a non-exempt actor.
    pub const PERF: u32 = 1 << 3;
    /// bpf(BPF_PROG_LOAD) by a non-exempt actor.
    pub const BPF: u32 = 1 << 4;
}

/// One compiled deny rule, indexed by its slot in [`KRULES_MAP`](crate::KRULES_MAP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KRule {
    /// [`ops`] bits this rule denies.
    pub ops: u32,
    /// [`krule_flags`] bits.
    pub flags: u32,
}

layout!(
    KRule,
    8;
    ops: u32,
    flags: u32,
);

pub mod krule_flags {
    /// The slot holds a rule.
    pub const ENABLED: u32 = 1 << 0;
    /// An unexpired grant for the actor lets the action through.
    pub const HONOR_GRANTS: u32 = 1 << 1;
    /// The rule applies to every actor (perf/bpf rules have no target).
    pub const ACTOR_ONLY: u32 = 1 << 2;
}

/// Exemption of one actor (login uid, else uid) from one rule slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExemptKey {
    pub slot: u32,
    pub uid: u32,
}
layout!(
    ExemptKey,
    8;
    slot: u32,
    uid: u32,
);

/// Grant scope kinds in [`GrantKey::scope`].
pub mod grant_scope {
    pub const ANY: u32 = 0;
    /// `value` is a cgroup id (a systemd unit).
    pub const CGROUP: u32 = 1;
    /// `value` is a tgid.
    pub const TGID: u32 = 2;
}

/// A grant for one actor (login uid, else uid) over one scope; the map value
/// is the expiry in `CLOCK_BOOTTIME` ns, so it ends in the kernel, on time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrantKey {
    pub uid: u32,
    pub scope: u32,
    pub value: u64,
}

layout!(
    GrantKey,
    16;
    uid: u32,
    scope: u32,
    value: u64,
);

/// Identity of an executable file: inode and device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}
layout!(
    InodeKey,
    16;
    ino: u64,
    dev: u32,
    _pad: u32,
);
